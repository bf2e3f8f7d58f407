/*
 * Layer Capture tab: the live status (pushed as plugin messages) and the gallery of
 * captured prints, layers laid out as the physical grid (one camera at a time, chosen
 * with the camera selector when a print has several), with the full image, its
 * metadata, the zip download and deleting. A print's videos: layercapture_videos.js;
 * the viewer's stepping, compare modes and deep links: layercapture_compare.js.
 */
$(function () {
    "use strict";

    var PLUGIN = "layercapture";

    function number(value, digits) {
        return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
    }

    // One numbering wherever a position is named: 1 to n, row by row from the front-left
    // corner, the same on every layer (file names keep the 0-based index: pos_00 is 1).
    function positionNumber(index) {
        return index + 1;
    }

    function LayerCaptureTabViewModel(parameters) {
        var self = this;
        self.loginState = parameters[0];
        self.access = parameters[1];
        self.client = function () {
            return OctoPrint.plugins.layercapture;
        };

        // gettext is only ready once the view models are built. index/count here count the
        // pictures in visiting order (a snake path), so they name no position.
        var phases = {
            stopping: gettext("stopping the job"),
            moving: gettext("moving to the next position (picture %(index)s of %(count)s)"),
            capturing: gettext("taking picture %(index)s of %(count)s"),
            returning: gettext("returning to the print"),
            resuming: gettext("continuing the job")
        };

        self.printPage = 10;
        self.layerPage = 10; // layers per page, newest first, one of them open
        self.unknownFile = gettext("(unknown file)");

        self.canView = ko.pureComputed(function () {
            return self.loginState.hasPermission(
                self.access.permissions.PLUGIN_LAYERCAPTURE_VIEW
            );
        });
        self.canManage = ko.pureComputed(function () {
            return self.loginState.hasPermission(
                self.access.permissions.PLUGIN_LAYERCAPTURE_MANAGE
            );
        });

        // ---- live status

        self.status = ko.observable({state: "idle"});

        self.statusText = ko.pureComputed(function () {
            var st = self.status() || {};
            switch (st.state) {
                case "waiting":
                    if (st.next_layer) {
                        return _.sprintf(gettext("Waiting for layer %(layer)s"), {
                            layer: st.next_layer
                        });
                    }
                    if (st.next_z) {
                        return _.sprintf(gettext("Waiting for the first layer at Z %(z)s mm"), {
                            z: st.next_z
                        });
                    }
                    return gettext("Waiting for the next target layer");
                case "capturing":
                    return (
                        _.sprintf(gettext("Capturing layer %(layer)s: "), st) +
                        _.sprintf(phases[st.phase] || st.phase || "", st)
                    );
                case "captured":
                    return _.sprintf(
                        gettext("Captured layer %(layer)s: %(images)s images in %(seconds)s s"),
                        {
                            layer: st.layer,
                            images: st.images,
                            seconds: number(st.total_s, 1)
                        }
                    );
                case "error":
                    return _.sprintf(gettext("Error: %(message)s"), {
                        message: st.message || gettext("the capture failed")
                    });
                case "unsupported":
                    return st.message || gettext("This print is not captured");
                default:
                    return gettext("Idle: captures start with the next print");
            }
        });

        self.progressPercent = ko.pureComputed(function () {
            var st = self.status() || {};
            if (st.state !== "capturing" || !st.count) return null;
            return Math.round((100 * (st.index || 0)) / st.count);
        });

        self.nextText = ko.pureComputed(function () {
            var st = self.status() || {};
            if (!_.contains(["waiting", "capturing", "captured"], st.state)) return "";
            var parts = [];
            if (st.current_layer) {
                parts.push(_.sprintf(gettext("printing layer %(layer)s"), {layer: st.current_layer}));
            }
            if (st.next_layer) {
                parts.push(_.sprintf(gettext("next capture: layer %(layer)s"), {layer: st.next_layer}));
            }
            if (st.next_z) {
                parts.push(_.sprintf(gettext("next Z target: %(z)s mm"), {z: st.next_z}));
            }
            return parts.join(", ");
        });

        self.estimateText = ko.pureComputed(function () {
            var st = self.status() || {};
            if (!st.estimate_s) return "";
            var text =
                st.estimate_source === "measured"
                    ? gettext("Each captured layer adds about %(seconds)s s (measured over %(layers)s layers)")
                    : gettext("Each captured layer adds about %(seconds)s s (planned from the settings)");
            return _.sprintf(text, {
                seconds: number(st.estimate_s, 1),
                layers: st.measured_layers
            });
        });

        self.lastErrorText = ko.pureComputed(function () {
            var error = (self.status() || {}).last_error;
            if (!error) return "";
            if (error.layer) {
                return _.sprintf(gettext("Last problem (layer %(layer)s): %(message)s"), error);
            }
            return _.sprintf(gettext("Last problem: %(message)s"), error);
        });

        self.refreshStatus = function () {
            if (!self.canView()) return;
            self.client()
                .getStatus()
                .done(function (response) {
                    self.status(response.status || {state: "idle"});
                });
        };

        // ---- gallery

        self.prints = ko.observableArray([]);
        self.printsTotal = ko.observable(0);
        self.printsOffset = ko.observable(0);
        self.printsLoaded = ko.observable(false);
        self.currentId = ko.observable(null);
        self.selected = ko.observable(null);
        self.selectedId = ko.pureComputed(function () {
            return self.selected() ? self.selected().id : null;
        });
        self.layers = ko.observableArray([]); // one page, newest first
        self.layersTotal = ko.observable(0);
        self.layersPageIndex = ko.observable(0); // 0: the newest layers
        // the layer shown with its images: null until chosen (then the newest opens),
        // false when the user closed it
        self.openLayer = ko.observable(null);
        self.galleryError = ko.observable("");
        self.viewer = ko.observable(null);
        // the camera whose pictures the grid shows: a name of the selected print's
        // cameras ("" for prints of one camera from before several were possible)
        self.camera = ko.observable("");
        self.deleting = ko.observable(null);
        self.deleteBusy = ko.observable(false);
        self.tabActive = false;

        self.fileUrl = function (path) {
            return self.client().fileUrl(path);
        };
        self.zipUrl = function (id, camera) {
            return self.client().zipUrl(id, camera);
        };
        self.exportUrl = function (id) {
            return self.client().exportUrl(id);
        };
        self.when = function (iso) {
            return iso ? String(iso).replace("T", " ") : "";
        };
        self.countsText = function (print) {
            return _.sprintf(gettext("%(layers)s layers, %(images)s images, %(size)s"), {
                layers: print.layer_count,
                images: print.image_count,
                size: formatSize(print.size_bytes)
            });
        };
        self.videoCountText = function (count) {
            return _.sprintf(gettext("%(count)s videos"), {count: count});
        };
        self.failuresText = function (count) {
            return _.sprintf(gettext("%(count)s failures"), {count: count});
        };
        self.pageText = function (offset, shown, total) {
            return _.sprintf(gettext("%(first)s-%(last)s of %(total)s"), {
                first: shown ? offset + 1 : 0,
                last: offset + shown,
                total: total
            });
        };

        var failed = function (what) {
            return function (xhr) {
                self.galleryError(
                    _.sprintf(gettext("Could not %(what)s (HTTP %(status)s)"), {
                        what: what,
                        status: xhr.status
                    })
                );
            };
        };

        self.loadPrints = function () {
            if (!self.canView()) return $.Deferred().resolve().promise();
            return self
                .client()
                .getPrints(self.printsOffset(), self.printPage)
                .done(function (response) {
                    self.galleryError("");
                    self.prints(response.prints);
                    self.printsTotal(response.total);
                    self.currentId(response.current);
                    self.printsLoaded(true);
                    var selected = self.selected();
                    if (selected) {
                        var fresh = _.findWhere(response.prints, {id: selected.id});
                        if (fresh) self.selected(fresh);
                    }
                })
                .fail(failed(gettext("load the captures")));
        };

        self.pagePrints = function (step) {
            self.printsOffset(Math.max(0, self.printsOffset() + step * self.printPage));
            self.loadPrints();
        };

        self.openPrint = function (print) {
            if (!self.selected() || self.selected().id !== print.id) {
                self.layersPageIndex(0);
                self.layersTotal(print.layer_count);
                self.openLayer(null);
                self.camera((print.cameras || [""])[0] || "");
            }
            self.selected(print);
            self.loadLayers();
            self.videos.load(print);
        };

        // ---- cameras of the selected print

        self.cameras = ko.pureComputed(function () {
            var print = self.selected();
            return print && print.cameras ? print.cameras : [];
        });
        self.severalCameras = ko.pureComputed(function () {
            return self.cameras().length > 1;
        });
        self.chooseCamera = function (name) {
            if (name === self.camera()) return;
            self.camera(name);
            self.layers(_.map(self.layers(), function (layer) {
                return self.layerView(layer.record);
            }));
        };
        self.cameraZipUrl = ko.pureComputed(function () {
            var print = self.selected();
            return print && self.camera() ? self.zipUrl(print.id, self.camera()) : "";
        });

        // The API lists a print's layers lowest first: a page of the newest is a slice
        // from the end of that list.
        self.layerSlice = function (total) {
            var end = Math.max(0, total - self.layersPageIndex() * self.layerPage);
            var start = Math.max(0, end - self.layerPage);
            return {offset: start, limit: Math.max(1, end - start)};
        };

        self.loadLayers = function (sliceAgain) {
            var print = self.selected();
            if (!print) return;
            var total = self.layersTotal();
            var slice = self.layerSlice(total);
            self.client()
                .getLayers(print.id, slice.offset, slice.limit)
                .done(function (response) {
                    if (!self.selected() || self.selected().id !== print.id) return;
                    self.layersTotal(response.total);
                    if (response.total !== total && sliceAgain !== false) {
                        // layers were added (a print running) or deleted meanwhile
                        self.loadLayers(false);
                        return;
                    }
                    var newestBefore = self.layers().length ? self.layers()[0].layer : null;
                    var layers = _.map(response.layers, self.layerView).reverse();
                    self.layers(layers);
                    var open = self.openLayer();
                    var shown = _.pluck(layers, "layer");
                    var following = open === newestBefore && self.layersPageIndex() === 0;
                    if (open === null || following || (open !== false && !_.contains(shown, open))) {
                        self.openLayer(layers.length ? layers[0].layer : null);
                    }
                })
                .fail(function (xhr) {
                    if (xhr.status === 404) {
                        self.selected(null);
                        self.layers([]);
                        self.loadPrints();
                    } else {
                        failed(gettext("load the layers"))(xhr);
                    }
                });
        };

        // step -1: newer layers, 1: older ones
        self.pageLayers = function (step) {
            var pages = Math.max(1, Math.ceil(self.layersTotal() / self.layerPage));
            self.layersPageIndex(Math.min(pages - 1, Math.max(0, self.layersPageIndex() + step)));
            self.openLayer(null);
            self.loadLayers();
        };

        self.hasOlderLayers = ko.pureComputed(function () {
            return (self.layersPageIndex() + 1) * self.layerPage < self.layersTotal();
        });

        self.layerPageText = ko.pureComputed(function () {
            var first = self.layersPageIndex() * self.layerPage;
            return _.sprintf(gettext("layers %(first)s-%(last)s of %(total)s, newest first"), {
                first: self.layers().length ? first + 1 : 0,
                last: first + self.layers().length,
                total: self.layersTotal()
            });
        });

        self.isOpen = function (layer) {
            return self.openLayer() === layer;
        };

        self.toggleLayer = function (layer) {
            self.openLayer(self.isOpen(layer) ? false : layer);
        };

        self.layerView = function (layer) {
            var size = layer.grid_size || 1;
            var camera = self.camera();
            var cameras = layer.cameras || [""];
            // the chosen camera's pictures; a layer without it shows its first camera's
            var shown = _.contains(cameras, camera) ? camera : cameras[0] || "";
            var mine = _.filter(layer.images, function (image) {
                return (image.camera || "") === shown;
            });
            var images = _.indexBy(mine, "index");
            var skipped = _.indexBy(layer.skipped, "index");
            var failures = _.groupBy(
                _.filter(layer.failures, function (f) {
                    var ours = !f.camera || f.camera === shown;
                    return ours && f.index !== null && f.index !== undefined;
                }),
                "index"
            );
            var cells = [];
            var count = size * size;
            // rows from the back of the bed (top) to the front (bottom), as seen from above
            for (var row = size - 1; row >= 0; row--) {
                for (var col = 0; col < size; col++) {
                    var index = row * size + col;
                    var image = images[index] || null;
                    var why = skipped[index]
                        ? skipped[index].reason
                        : failures[index]
                          ? _.pluck(failures[index], "message").join("; ")
                          : gettext("no image");
                    cells.push({
                        index: index,
                        image: image,
                        thumbUrl: image ? self.fileUrl(image.thumbnail || image.path) : "",
                        label: String(positionNumber(index)),
                        tooltip: image
                            ? _.sprintf(gettext("Position %(number)s of %(count)s: X %(x)s Y %(y)s"), {
                                  number: positionNumber(index),
                                  count: count,
                                  x: number(image.position && image.position.x, 1),
                                  y: number(image.position && image.position.y, 1)
                              })
                            : _.sprintf(gettext("Position %(number)s of %(count)s: %(why)s"), {
                                  number: positionNumber(index),
                                  count: count,
                                  why: why
                              })
                    });
                }
            }
            var subtitle = _.sprintf(gettext("Z %(z)s mm, %(when)s, %(count)s images"), {
                z: number(layer.z_height, 2),
                when: self.when(layer.timestamp),
                count: layer.images.length
            });
            if (cameras.length > 1) {
                subtitle +=
                    " " +
                    _.sprintf(gettext("(%(count)s of camera %(camera)s)"), {
                        count: mine.length,
                        camera: shown
                    });
            }
            // the mosaic is the first camera's (the one camera_mounting describes)
            var mosaic = self.mosaicView(shown === (cameras[0] || "") ? layer : {});
            return _.extend({}, layer, mosaic, {
                record: layer,
                camera: shown,
                several: cameras.length > 1,
                cells: cells,
                columns: "repeat(" + size + ", minmax(0, 1fr))",
                title: _.sprintf(gettext("Layer %(layer)s"), layer),
                subtitle: subtitle,
                failureText: layer.failures.length
                    ? _.pluck(layer.failures, "message").join("; ")
                    : ""
            });
        };

        // a toolhead camera's layer: its mosaic first, the overlays switchable on top
        self.mosaicView = function (layer) {
            var info = layer.mosaic_info || null;
            var text = "";
            if (info && info.status === "pending") {
                text = gettext("The mosaic is being made once the head is back.");
            } else if (info && info.status !== "done") {
                text = info.error || gettext("No mosaic.");
            } else if (info && info.score !== null && info.score !== undefined) {
                text = _.sprintf(
                    gettext("Departure score %(score)s, %(regions)s regions"),
                    {score: number(info.score * 100, 1) + " %", regions: (info.regions || []).length}
                );
            }
            return {
                hasMosaic: Boolean(info),
                mosaicUrl: layer.mosaic ? self.fileUrl(layer.mosaic) : null,
                mosaicToolpathUrl: layer.mosaic_toolpath ? self.fileUrl(layer.mosaic_toolpath) : null,
                mosaicDepartureUrl: layer.mosaic_departure ? self.fileUrl(layer.mosaic_departure) : null,
                mosaicText: text,
                mosaicWarning: Boolean(info && info.warning),
                showToolpath: ko.observable(true),
                showDeparture: ko.observable(true)
            };
        };

        self.openImage = function (layer, image) {
            self.compare.open(self.selectedId(), layer, image);
            self.showImage(layer, image);
            $("#layercapture_viewer").modal("show");
        };

        // the viewer's title, image and metadata rows for one image (stepping calls it too)
        self.showImage = function (layer, image) {
            var position = image.position || {};
            var count = (layer.grid_size || 1) * (layer.grid_size || 1);
            var row = function (name, value) {
                return {name: name, value: String(value)};
            };
            var rows = ko.observableArray([
                row(gettext("Layer"), layer.layer),
                row(gettext("Layer Z"), number(layer.z_height, 2) + " mm"),
                row(
                    gettext("Position"),
                    _.sprintf(
                        gettext("%(number)s of %(count)s: row %(row)s, column %(col)s from the front left"),
                        {
                            number: positionNumber(image.index),
                            count: count,
                            row: image.row + 1,
                            col: image.col + 1
                        }
                    )
                ),
                row(gettext("File"), String(image.path).split("/").pop()),
                row(
                    gettext("Commanded X / Y / Z"),
                    [number(position.x, 2), number(position.y, 2), number(position.z, 2)].join(" / ")
                ),
                row(gettext("Size"), formatSize(image.size_bytes)),
                row(gettext("G-code file"), layer.gcode_file || "-")
            ]);
            if (layer.several) rows.splice(1, 0, row(gettext("Camera name"), image.camera));
            var title = _.sprintf(gettext("Layer %(layer)s, position %(number)s of %(count)s"), {
                layer: layer.layer,
                number: positionNumber(image.index),
                count: count
            });
            if (layer.several) {
                title += " " + _.sprintf(gettext("(camera %(camera)s)"), {camera: image.camera});
            }
            var fileName = String(image.path).split("/").pop();
            self.viewer({
                title: title,
                imageUrl: self.fileUrl(image.path),
                metadataUrl: self.fileUrl(layer.metadata),
                toolpathUrl: layer.toolpath_svg ? self.fileUrl(layer.toolpath_svg) : null,
                rows: rows
            });
            // the rest comes from the layer's metadata file itself
            self.client()
                .getFile(layer.metadata)
                .done(function (meta) {
                    // this camera's picture of this position: the one with this file name
                    var shot = _.findWhere(meta.images || [], {path: fileName}) || {};
                    var measured = shot.measured || {};
                    // E only where the job stopped: during the capture the extruder is
                    // retracted (and may report in relative mode), so its E means nothing there
                    var extra = [
                        row(
                            gettext("Measured X / Y / Z"),
                            [number(measured.x, 2), number(measured.y, 2), number(measured.z, 2)].join(
                                " / "
                            )
                        ),
                        row(gettext("Camera"), shot.camera || meta.camera || "-"),
                        row(gettext("Captured at"), self.when(shot.captured_at)),
                        row(gettext("Time at this position"), number(shot.duration_s, 3) + " s"),
                        row(
                            gettext("Layer capture took"),
                            number((meta.timings || {}).total, 2) + " s"
                        )
                    ];
                    var stop = meta.stop_position;
                    if (stop) {
                        extra.push(
                            row(
                                gettext("Job stopped at X / Y / Z / E"),
                                [
                                    number(stop.x, 2),
                                    number(stop.y, 2),
                                    number(stop.z, 2),
                                    number(stop.e, 3)
                                ].join(" / ")
                            )
                        );
                    }
                    _.each(meta.failures || [], function (failure) {
                        if (failure.camera && image.camera && failure.camera !== image.camera) {
                            return; // another camera's
                        }
                        extra.push(row(gettext("Failure"), failure.message));
                    });
                    rows.push.apply(rows, extra);
                })
                .fail(function (xhr) {
                    rows.push(
                        row(
                            gettext("Metadata"),
                            _.sprintf(gettext("could not be loaded (HTTP %(status)s)"), {
                                status: xhr.status
                            })
                        )
                    );
                });
        };

        self.askDelete = function (print) {
            self.deleting(print);
            $("#layercapture_confirm_delete").modal("show");
        };

        self.confirmDelete = function () {
            var print = self.deleting();
            if (!print) return;
            self.deleteBusy(true);
            self.client()
                .deletePrint(print.id)
                .done(function () {
                    if (self.selectedId() === print.id) {
                        self.selected(null);
                        self.layers([]);
                        self.videos.clear();
                    }
                    self.loadPrints();
                })
                .fail(failed(gettext("delete the captures")))
                .always(function () {
                    self.deleteBusy(false);
                    self.deleting(null);
                    $("#layercapture_confirm_delete").modal("hide");
                });
        };

        self.refreshGallery = function () {
            self.loadPrints().done(function () {
                self.loadLayers();
            });
        };

        self.rescan = function () {
            self.client().rescan().done(self.refreshGallery).fail(failed(gettext("rescan")));
        };

        self.videos = new LayerCaptureVideos(self);
        self.compare = new LayerCaptureCompare(self);

        // ---- OctoPrint callbacks

        self.onStartupComplete = function () {
            // the tab link is outside this view model's bindings: follow the permission here
            var link = $("#tab_plugin_layercapture_link");
            link.toggle(self.canView());
            self.canView.subscribe(function (allowed) {
                link.toggle(allowed);
            });
            self.refreshStatus();
            self.tabActive = OctoPrint.coreui.selectedTab === "#tab_plugin_layercapture";
            if (self.tabActive) self.refreshGallery();
        };
        self.onUserLoggedIn = self.refreshStatus;

        self.onAfterTabChange = function (current) {
            self.tabActive = current === "#tab_plugin_layercapture";
            if (self.tabActive) self.refreshGallery();
            if (self.tabActive && self.compare.pending) self.compare.openPending();
        };

        self.mosaicNotice = ko.observable("");

        self.onDataUpdaterPluginMessage = function (plugin, data) {
            if (plugin !== PLUGIN || !data) return;
            if (data.type === "video") {
                self.videos.onJob(data.job);
                if (self.tabActive && data.job && data.job.state === "done") self.loadPrints();
                return;
            }
            if (data.type === "mosaic") {
                var m = data.mosaic || {};
                if (m.state === "stitching") {
                    self.mosaicNotice(
                        _.sprintf(gettext("Layer %(layer)s: stitching the mosaic, step %(done)s of %(total)s"), m)
                    );
                } else {
                    self.mosaicNotice(
                        m.warning
                            ? _.sprintf(
                                  gettext("Layer %(layer)s departs from its toolpath (score %(score)s): look at its departure map"),
                                  {layer: m.layer, score: number((m.score || 0) * 100, 1) + " %"}
                              )
                            : ""
                    );
                    if (self.tabActive) self.refreshGallery();
                }
                return;
            }
            if (data.type !== "status") return;
            var status = data.status || {state: "idle"};
            self.status(status);
            if (self.tabActive && (status.state === "captured" || status.state === "idle")) {
                self.refreshGallery();
            }
        };
    }

    OCTOPRINT_VIEWMODELS.push({
        construct: LayerCaptureTabViewModel,
        dependencies: ["loginStateViewModel", "accessViewModel"],
        elements: ["#tab_plugin_layercapture"]
    });
});
