/*
 * Layer Capture tab: the videos of the print that is open in the gallery. Lists them,
 * plays one inline, asks for renders and cancels them, and follows the render's progress
 * (pushed as "video" plugin messages). Used by the tab's view model (layercapture_tab.js).
 * A print of several cameras has videos per camera: the tab's camera selector chooses
 * whose are listed, and a render of the grid or of one position is that camera's.
 */
(function (global) {
    "use strict";

    var ACTIVE = ["queued", "waiting", "preparing", "rendering", "paused"];

    function formatSeconds(value) {
        return value === null || value === undefined ? "-" : Number(value).toFixed(1);
    }

    function LayerCaptureVideos(tab) {
        var self = this;
        self.tab = tab;
        self.printId = null;
        self.videos = ko.observableArray([]);
        self.job = ko.observable(null);
        self.ffmpegError = ko.observable("");
        self.requestError = ko.observable("");
        self.loaded = ko.observable(false);
        self.target = ko.observable("all");
        self.playing = ko.observable(null);
        self.busy = ko.observable(false);

        self.positions = ko.observableArray([]); // the indexes with an image, from the server
        self.gridSize = ko.observable(1);

        // the camera whose videos are shown: the tab's choice, when the print has several
        self.camera = ko.pureComputed(function () {
            return self.tab.severalCameras() ? self.tab.camera() : null;
        });

        // positions are numbered 1 to n as everywhere in the tab; the API takes the index
        self.targets = ko.pureComputed(function () {
            var all = self.camera() === null ? gettext("All videos") : gettext("All videos of every camera");
            var options = [{value: "all", text: all}];
            if (self.gridSize() > 1) options.push({value: "grid", text: gettext("Grid video")});
            _.each(self.positions(), function (index) {
                options.push({
                    value: "position:" + index,
                    text: _.sprintf(gettext("Position %(number)s"), {number: index + 1})
                });
            });
            return options;
        });

        self.active = ko.pureComputed(function () {
            var job = self.job();
            return !!job && _.contains(ACTIVE, job.state);
        });

        self.percent = ko.pureComputed(function () {
            var job = self.job();
            return job && self.active() && job.percent !== null ? job.percent : null;
        });

        self.jobText = ko.pureComputed(function () {
            var job = self.job();
            if (!job) return "";
            var counts = {
                done: job.frames_done,
                total: job.frames_total,
                percent: job.percent || 0,
                what: job.current || gettext("videos"),
                reason: job.reason || "",
                count: job.videos.length,
                seconds: formatSeconds(job.render_seconds),
                error: job.error || ""
            };
            switch (job.state) {
                case "queued":
                    return gettext("Queued: waits for the renders before it");
                case "waiting":
                    return _.sprintf(gettext("Waiting: %(reason)s"), counts);
                case "preparing":
                    return _.sprintf(gettext("Preparing the frames of the %(what)s"), counts);
                case "rendering":
                    return _.sprintf(
                        gettext("Rendering the %(what)s: %(done)s of %(total)s frames (%(percent)s%%)"),
                        counts
                    );
                case "paused":
                    return _.sprintf(
                        gettext("Paused, %(reason)s: %(done)s of %(total)s frames"),
                        counts
                    );
                case "done":
                    return _.sprintf(gettext("Rendered %(count)s videos in %(seconds)s s"), counts);
                case "failed":
                    return _.sprintf(gettext("Render failed: %(error)s"), counts);
                case "cancelled":
                    return gettext("Render cancelled: nothing was written");
                default:
                    return job.state;
            }
        });

        self.items = ko.pureComputed(function () {
            var camera = self.camera();
            var shown = _.filter(self.videos(), function (video) {
                return camera === null || video.camera === camera;
            });
            return _.map(shown, function (video) {
                var label =
                    video.kind === "grid"
                        ? gettext("Grid video")
                        : _.sprintf(
                              gettext("Position %(number)s (row %(row)s, column %(col)s from the front left)"),
                              {number: video.index + 1, row: video.row + 1, col: video.col + 1}
                          );
                return {
                    video: video,
                    label: label,
                    details: _.sprintf(
                        gettext("%(frames)s frames, %(seconds)s s, %(width)sx%(height)s, %(size)s"),
                        {
                            frames: video.frame_count,
                            seconds: formatSeconds(video.duration_s),
                            width: video.width,
                            height: video.height,
                            size: formatSize(video.size_bytes)
                        }
                    ),
                    url: self.tab.fileUrl(video.path),
                    // a render replaces the file under the same name: a new URL for it
                    playUrl:
                        self.tab.fileUrl(video.path) +
                        "?rendered=" +
                        encodeURIComponent(video.rendered_at || video.size_bytes),
                    framesUrl: self.tab.fileUrl(video.metadata)
                };
            });
        });

        self.playingUrl = ko.pureComputed(function () {
            var item = self.playing();
            return item ? item.playUrl : "";
        });

        self.isPlaying = function (item) {
            var playing = self.playing();
            return !!playing && playing.video.path === item.video.path;
        };

        self.play = function (item) {
            self.playing(item);
        };

        // another camera chosen in the tab: play that camera's first video
        self.tab.camera.subscribe(function () {
            self.playing(self.items()[0] || null);
        });

        // ---- loading

        self.clear = function () {
            self.printId = null;
            self.videos([]);
            self.positions([]);
            self.gridSize(1);
            self.job(null);
            self.ffmpegError("");
            self.requestError("");
            self.playing(null);
            self.loaded(false);
        };

        self.load = function (print) {
            if (!print) {
                self.clear();
                return;
            }
            if (self.printId !== print.id) {
                self.clear();
                self.printId = print.id;
            }
            var id = print.id;
            self.tab
                .client()
                .getVideos(id)
                .done(function (answer) {
                    if (self.printId !== id) return;
                    self.videos(answer.videos);
                    self.positions(answer.positions || []);
                    self.gridSize(answer.grid_size || 1);
                    self.job(answer.render);
                    self.ffmpegError(answer.ffmpeg_error || "");
                    self.loaded(true);
                    var playing = self.playing();
                    var items = self.items();
                    var still = playing && _.find(items, function (item) {
                        return item.video.path === playing.video.path;
                    });
                    // a video that was replaced gets a fresh URL load; the grid by default
                    self.playing(still || items[0] || null);
                });
        };

        // ---- rendering

        self.start = function () {
            if (!self.printId) return;
            var choice = self.target();
            var body = {target: choice};
            if (choice.indexOf("position:") === 0) {
                body = {target: "position", index: Number(choice.split(":")[1])};
            }
            if (choice !== "all" && self.camera() !== null) body.camera = self.camera();
            self.requestError("");
            self.busy(true);
            self.tab
                .client()
                .renderVideos(self.printId, body)
                .done(function (answer) {
                    self.job(answer.job);
                })
                .fail(function (xhr) {
                    var error = xhr.responseJSON && xhr.responseJSON.error;
                    self.requestError(
                        error ||
                            _.sprintf(gettext("Could not start the render (HTTP %(status)s)"), {
                                status: xhr.status
                            })
                    );
                })
                .always(function () {
                    self.busy(false);
                });
        };

        self.cancel = function () {
            var job = self.job();
            if (!job) return;
            self.tab
                .client()
                .cancelRender(job.id)
                .fail(function (xhr) {
                    if (xhr.status !== 404) {
                        self.requestError(
                            _.sprintf(gettext("Could not cancel the render (HTTP %(status)s)"), {
                                status: xhr.status
                            })
                        );
                    }
                });
        };

        // a "video" plugin message: a render's state changed or it made progress
        self.onJob = function (job) {
            if (!job || job.print_id !== self.printId) return;
            var before = self.job();
            self.job(job);
            if (job.state === "done" && (!before || before.state !== "done")) {
                self.playing(null); // its file changed: load it again
                self.load(self.tab.selected());
            }
        };
    }

    // formatSize is OctoPrint's helper (global); the tab's view model builds this
    global.LayerCaptureVideos = LayerCaptureVideos;
})(window);
