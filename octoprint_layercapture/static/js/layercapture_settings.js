/*
 * Layer Capture settings panel: live validation through the plugin's /settings/validate,
 * errors next to the fields, the grid drawing, the list of cameras (add, remove, the
 * webcam picker and "Test camera" per camera).
 */
$(function () {
    "use strict";

    var PLUGIN = "layercapture";
    // what "Test camera" sends: the camera of its row (unsaved), the settings every camera
    // shares and the grid centre and height, where the fake camera draws the head; the
    // keys come from the server (cameras/probe.py), which accepts exactly these
    function cameraTestKeys() {
        var keys = $(".layercapture-settings").attr("data-camera-test-keys");
        return keys ? JSON.parse(keys) : [];
    }

    // one entry of the "cameras" setting (camera_settings.py): only these fields are sent
    var CAMERA_FIELDS = ["name", "type", "webcam", "url", "mounting"];
    var MAX_CAMERAS = 4; // camera_settings.MAX_CAMERAS; the server checks it too

    function plainCamera(camera) {
        return _.pick(ko.toJS(camera) || {}, CAMERA_FIELDS);
    }

    function LayerCaptureSettingsViewModel(parameters) {
        var self = this;
        self.settingsViewModel = parameters[0];
        self.loginState = parameters[1];
        self.access = parameters[2];

        self.s = null; // settings.plugins.layercapture, set before binding
        self.shown = false;
        self.errors = ko.observableArray([]); // [{key, message}] from the server
        self.preview = ko.observable(null);
        self.estimate = ko.observable(null);

        // time a captured layer adds, twice and labelled as such: planned from the unsaved
        // values (moves at the set speeds, the settle delays, a guess for the rest), and
        // measured on the last print's layers (the tab shows the same figure during a print)
        var seconds = function (value) {
            return Number(value).toFixed(1);
        };
        self.estimatePlanned = ko.pureComputed(function () {
            var estimate = self.estimate();
            if (!estimate || !estimate.planned_s) return "";
            var parts = estimate.planned_parts || {};
            return _.sprintf(
                gettext(
                    "Planned with these settings: about %(total)s s per captured layer (moves %(moves)s s at the set speeds within the printer's limits, with acceleration; settle delays %(settle)s s; and %(guessed)s s guessed for the camera and for stopping and continuing the job). Printer limits: %(limits)s."
                ),
                {
                    total: seconds(estimate.planned_s),
                    moves: seconds(parts.moves_s || 0),
                    settle: seconds(parts.settle_s || 0),
                    guessed: seconds(parts.guessed_s || 0),
                    limits: parts.limits || gettext("unknown")
                }
            );
        });
        self.estimateMeasured = ko.pureComputed(function () {
            var estimate = self.estimate();
            if (!estimate || !estimate.measured_layers) return "";
            return _.sprintf(
                gettext(
                    "Measured on the last print: %(total)s s per captured layer (mean of %(count)s layers, with the settings of that print)."
                ),
                {total: seconds(estimate.measured_s), count: estimate.measured_layers}
            );
        });
        self.estimateWhy = ko.pureComputed(function () {
            var estimate = self.estimate();
            if (!estimate || !estimate.measured_layers || !estimate.planned_s) return "";
            var measured = Number(estimate.measured_s);
            if (Math.abs(estimate.planned_s - measured) <= 0.2 * measured) return "";
            return gettext(
                "The two differ: the plan counts the moves at the set speeds and guesses the camera and the stop, the measurement is what the printer and the camera took (a simulated printer, like OctoPrint's virtual printer, moves much faster)."
            );
        });
        self.webcams = ko.observableArray([]);
        self.webcamsError = ko.observable("");
        self.cameraTest = ko.observable(null); // {index, result} of the last test
        self.cameraTesting = ko.observable(null); // the index of the camera being tested
        self.maxCameras = MAX_CAMERAS;
        self.snapshotUrlLabel = gettext("Snapshot URL");
        self.streamUrlLabel = gettext("MJPEG stream URL");
        self.cameraTypes = [
            {value: "webcam", text: gettext("OctoPrint webcam")},
            {value: "snapshot", text: gettext("Snapshot URL")},
            {value: "stream", text: gettext("MJPEG stream URL")},
            {value: "fake", text: gettext("Fake camera (test images)")}
        ];
        self.cameraFieldLabels = {
            name: gettext("name"),
            type: gettext("type"),
            webcam: gettext("OctoPrint webcam"),
            url: gettext("URL"),
            mounting: gettext("mounting")
        };
        self._checkSeq = 0;

        self.gridSizes = [
            {value: 1, text: "1 x 1"},
            {value: 3, text: "3 x 3"},
            {value: 5, text: "5 x 5"}
        ];

        self.labels = {
            settings: gettext("Settings"),
            grid_center_x: gettext("Centre X"),
            grid_center_y: gettext("Centre Y"),
            grid_spacing: gettext("Spacing"),
            grid_size: gettext("Size"),
            z_offset: gettext("Height above the layer"),
            bed_min_x: gettext("Bed X min"),
            bed_max_x: gettext("Bed X max"),
            bed_min_y: gettext("Bed Y min"),
            bed_max_y: gettext("Bed Y max"),
            bed_max_z: gettext("Max Z"),
            capture_every_n_layers: gettext("Every N layers"),
            capture_z_heights: gettext("At Z heights"),
            min_layer_height: gettext("Minimum layer height"),
            cameras: gettext("Cameras"),
            snapshot_timeout: gettext("Timeout"),
            snapshot_retries: gettext("Retries"),
            capture_delay: gettext("Settle delay"),
            pre_capture_delay: gettext("Extra delay"),
            image_quality: gettext("JPEG quality"),
            stop_mode: gettext("Stop the job by"),
            movement_speed: gettext("XY speed"),
            z_speed: gettext("Z speed"),
            retract_length: gettext("Retract length"),
            retract_speed: gettext("Retract speed"),
            wait_for_moves: gettext("Wait for each move with"),
            firmware: gettext("Firmware"),
            pause_timeout: gettext("Stop timeout"),
            resume_timeout: gettext("Continue timeout"),
            movement_timeout: gettext("Move timeout"),
            emergency_resume_attempts: gettext("Emergency resume attempts"),
            capture_folder: gettext("Capture folder"),
            video_fps: gettext("Frame rate"),
            video_hold_seconds: gettext("Hold the last frame"),
            video_render_after_print: gettext("Render the videos after every print"),
            video_render_while_printing: gettext("Render while a print is running")
        };

        self.labelFor = function (key) {
            // cameras.1.url: "Camera 2 URL"; cameras.1: "Camera 2"
            var camera = /^cameras\.(\d+)(?:\.(\w+))?$/.exec(key || "");
            if (camera) {
                var title = _.sprintf(gettext("Camera %(number)s"), {
                    number: Number(camera[1]) + 1
                });
                return camera[2] ? title + " " + (self.cameraFieldLabels[camera[2]] || camera[2]) : title;
            }
            return self.labels[key] || key;
        };

        self.canValidate = ko.pureComputed(function () {
            return self.loginState.hasPermission(self.access.permissions.SETTINGS);
        });
        self.canTestCamera = ko.pureComputed(function () {
            return self.loginState.hasPermission(
                self.access.permissions.PLUGIN_LAYERCAPTURE_MANAGE
            );
        });

        // ---- Calibrate (moves the idle printer's head; Manage captures + Settings)

        self.calibrateX = ko.observable(100);
        self.calibrateY = ko.observable(100);
        self.calibrateZ = ko.observable(10);
        self.calibration = ko.observable(null); // {state, result, error, shot, shots}
        self.calibrateError = ko.observable("");
        self.calibrating = ko.pureComputed(function () {
            var c = self.calibration();
            return !!c && !_.contains(["idle", "done", "failed"], c.state);
        });
        self.calibrationText = ko.pureComputed(function () {
            var c = self.calibration();
            if (!c || c.state === "idle") return "";
            if (c.state === "failed") return gettext("Calibrate failed: ") + c.error;
            if (c.state !== "done") {
                return c.shot
                    ? _.sprintf(gettext("Calibrating: shot %(shot)s of %(shots)s"), c)
                    : gettext("Calibrating: ") + c.state;
            }
            var r = c.result || {};
            if (!r.ok) return gettext("Calibrate refused: ") + r.reason;
            return _.sprintf(
                gettext(
                    "Measured: scale %(scale)s px/mm, rotation %(rotation)s°, %(mirrored)s (residual %(residual_px)s px)"
                ),
                _.extend({}, r, {mirrored: r.mirrored ? gettext("mirrored") : gettext("not mirrored")})
            );
        });
        self.canApplyCalibration = ko.pureComputed(function () {
            var c = self.calibration();
            return !!c && c.state === "done" && !!c.result && c.result.ok;
        });
        self.calibrate = function () {
            self.calibrateError("");
            OctoPrint.postJson("plugin/" + PLUGIN + "/calibrate", {
                x: Number(self.calibrateX()),
                y: Number(self.calibrateY()),
                z: Number(self.calibrateZ())
            })
                .done(function (response) {
                    self.calibration(response.calibration);
                })
                .fail(function (xhr) {
                    var body = xhr.responseJSON || {};
                    self.calibrateError(body.error || xhr.statusText);
                });
        };
        self.applyCalibration = function () {
            var r = self.calibration().result;
            var m = self.s.camera_mounting;
            m.mode("toolhead");
            m.scale(r.scale);
            m.rotation(r.rotation);
            m.mirrored(r.mirrored);
        };
        // ---- errors next to the fields

        self.errorFor = function () {
            var keys = _.toArray(arguments);
            return _.map(
                _.filter(self.errors(), function (e) {
                    return _.contains(keys, e.key);
                }),
                function (e) {
                    return self.labelFor(e.key) + ": " + e.message;
                }
            ).join("; ");
        };

        self.hasError = function () {
            return self.errorFor.apply(self, arguments) !== "";
        };

        // the errors of camera ``index``'s fields ("" for the entry itself)
        var cameraKeys = function (index, fields) {
            return _.map(fields, function (field) {
                return field ? "cameras." + index + "." + field : "cameras." + index;
            });
        };
        self.cameraErrorFor = function (index) {
            return self.errorFor.apply(self, cameraKeys(index, _.rest(_.toArray(arguments))));
        };
        self.cameraHasError = function () {
            return self.cameraErrorFor.apply(self, arguments) !== "";
        };

        // ---- form values

        self.zHeightsText = ko.pureComputed({
            read: function () {
                if (!self.s) return "";
                var value = ko.unwrap(self.s.capture_z_heights);
                return Array.isArray(value) ? value.join(", ") : value || "";
            },
            write: function (text) {
                self.s.capture_z_heights(text);
            }
        });

        self.formData = function () {
            var data = {};
            _.each(ko.toJS(self.s) || {}, function (value, key) {
                if (key.charAt(0) !== "_") data[key] = value;
            });
            if (_.isArray(data.cameras)) data.cameras = _.map(data.cameras, plainCamera);
            return data;
        };

        // ---- the list of cameras

        self.cameraList = function () {
            var cameras = self.s ? self.s.cameras : null;
            return ko.isObservable(cameras) ? cameras : null;
        };

        self.cameraRows = ko.pureComputed(function () {
            var cameras = self.cameraList();
            return _.map(cameras ? cameras() : [], function (camera, index) {
                return {
                    camera: camera,
                    index: index,
                    number: index + 1,
                    title:
                        index === 0
                            ? gettext("Camera 1 (plain file names)")
                            : _.sprintf(gettext("Camera %(number)s"), {number: index + 1})
                };
            });
        });

        self.camerasLeftText = ko.pureComputed(function () {
            var left = self.maxCameras - self.cameraRows().length;
            if (left <= 0) {
                return _.sprintf(gettext("at most %(count)s cameras"), {count: self.maxCameras});
            }
            return "";
        });

        self.addCamera = function () {
            var cameras = self.cameraList();
            if (!cameras || cameras().length >= self.maxCameras) return;
            var taken = _.map(cameras(), function (camera) {
                return ko.unwrap(camera.name);
            });
            var number = cameras().length + 1;
            while (_.contains(taken, "cam" + number)) number++;
            cameras.push(
                ko.mapping.fromJS({
                    name: "cam" + number,
                    type: "snapshot",
                    webcam: "",
                    url: "",
                    mounting: "fixed"
                })
            );
            self.cameraTest(null);
        };

        self.removeCamera = function (row) {
            var cameras = self.cameraList();
            if (!cameras || cameras().length <= 1) return;
            cameras.remove(row.camera);
            self.cameraTest(null);
        };

        self.isChanged = function () {
            var received = self.settingsViewModel.lastReceivedSettings;
            var stored = received && received.plugins ? received.plugins[PLUGIN] : undefined;
            return stored === undefined || hasDataChanged(self.formData(), stored);
        };

        // ---- validation (and the grid preview that comes with it)

        self.check = function () {
            // resolves with this request's errors; only the newest answer updates the form
            var seq = ++self._checkSeq;
            var deferred = $.Deferred();
            var apply = function (errors, preview, estimate) {
                if (seq === self._checkSeq) {
                    self.errors(errors);
                    if (preview !== undefined) self.preview(preview || null);
                    self.estimate(estimate || null);
                }
                deferred.resolve(errors);
            };
            OctoPrint.plugins.layercapture
                .validateSettings(self.formData())
                .done(function (response) {
                    apply(response.errors || [], response.preview, response.estimate);
                })
                .fail(function (xhr) {
                    var response = xhr.responseJSON || {};
                    if (xhr.status === 400 && response.errors) {
                        apply(response.errors, response.preview, null);
                        return;
                    }
                    var message = _.sprintf(gettext("could not be checked (HTTP %(status)s)"), {
                        status: xhr.status
                    });
                    apply([{key: "settings", message: message}]);
                });
            return deferred.promise();
        };

        self.revealErrors = function () {
            $("#settings_plugin_layercapture_link a").tab("show");
            $("#settings_dialog_content").scrollTop(0);
        };

        // ---- grid drawing

        self.bedCenter = ko.pureComputed(function () {
            var preview = self.preview();
            return preview ? preview.bed_center : null;
        });

        self.centreOnBed = function () {
            var centre = self.bedCenter();
            if (!centre) return;
            self.s.grid_center_x(centre.x);
            self.s.grid_center_y(centre.y);
        };

        self.profileEdge = function (edge) {
            var preview = self.preview();
            if (!preview || !preview.profile_bounds) return gettext("profile");
            return String(preview.profile_bounds[edge]);
        };

        self.drawing = ko.pureComputed(function () {
            var preview = self.preview();
            if (!preview || !preview.points || !preview.points.length) return null;
            var box = preview.bounds;
            var xs = [];
            var ys = [];
            if (box) {
                xs.push(box.min_x, box.max_x);
                ys.push(box.min_y, box.max_y);
            }
            _.each(preview.points, function (p) {
                xs.push(p.x);
                ys.push(p.y);
                _.each(p.footprint || [], function (c) {
                    xs.push(c[0]);
                    ys.push(c[1]);
                });
            });
            var minX = _.min(xs);
            var maxX = _.max(xs);
            var minY = _.min(ys);
            var maxY = _.max(ys);
            var span = Math.max(maxX - minX, maxY - minY, 10);
            var pad = span * 0.06;
            var stroke = span / 150;
            // printer Y grows to the back: flip it so the front of the bed is at the bottom
            var flip = function (y) {
                return minY + maxY - y;
            };
            var byIndex = _.indexBy(preview.points, "index");
            return {
                viewBox: [minX - pad, minY - pad, maxX - minX + 2 * pad, maxY - minY + 2 * pad]
                    .map(function (v) {
                        return v.toFixed(2);
                    })
                    .join(" "),
                stroke: stroke,
                bed: box
                    ? {
                          x: box.min_x,
                          y: flip(box.max_y),
                          width: box.max_x - box.min_x,
                          height: box.max_y - box.min_y
                      }
                    : null,
                // a toolhead camera: each shot's patch of the bed (do they overlap?)
                footprints: _.map(
                    _.filter(preview.points, function (p) {
                        return p.footprint;
                    }),
                    function (p) {
                        return {
                            points: _.map(p.footprint, function (c) {
                                return c[0] + "," + flip(c[1]);
                            }).join(" "),
                            stroke: stroke
                        };
                    }
                ),
                path: _.map(preview.order, function (index) {
                    var p = byIndex[index];
                    return p.x + "," + flip(p.y);
                }).join(" "),
                points: _.map(preview.points, function (p) {
                    return {
                        cx: p.x,
                        cy: flip(p.y),
                        r: span / 50,
                        stroke: stroke * 1.5,
                        cls: p.inside ? "lc-point" : "lc-point lc-point-outside",
                        title:
                            _.sprintf(gettext("Position %(number)d: X %(x)s Y %(y)s"), {
                                number: p.index + 1,
                                x: p.x,
                                y: p.y
                            }) + (p.inside ? "" : ": " + p.reason)
                    };
                })
            };
        });

        self.outsidePoints = ko.pureComputed(function () {
            var preview = self.preview();
            if (!preview) return [];
            var outside = _.filter(preview.points, function (p) {
                return !p.inside;
            });
            var shown = 4;
            var lines = _.map(outside.slice(0, shown), function (p) {
                // positions are numbered 1 to n as everywhere in the UI (p.index is 0-based)
                return _.sprintf(gettext("Position %(number)d is not visited: %(reason)s"), {
                    number: p.index + 1,
                    reason: p.reason
                });
            });
            if (outside.length > shown) {
                lines.push(
                    _.sprintf(gettext("... and %(count)d more positions"), {
                        count: outside.length - shown
                    })
                );
            }
            return lines;
        });

        self.drawingCaption = ko.pureComputed(function () {
            var preview = self.preview();
            if (!preview) return gettext("The drawing needs a valid centre, spacing and size.");
            var inside = _.filter(preview.points, function (p) {
                return p.inside;
            }).length;
            var text = _.sprintf(gettext("%(inside)d of %(total)d positions on the bed"), {
                inside: inside,
                total: preview.points.length
            });
            if (!preview.bounds) text += " " + gettext("(bed size unknown)");
            return text;
        });

        // ---- webcams

        self.webcamOptionsFor = function (camera) {
            var current = ko.unwrap(camera.webcam) || "";
            var options = [{value: "", text: gettext("OctoPrint's snapshot webcam")}];
            var found = false;
            _.each(self.webcams(), function (cam) {
                var text = cam.displayName || cam.name;
                if (cam.displayName && cam.displayName !== cam.name) text += " (" + cam.name + ")";
                if (cam.snapshot) text += " - " + gettext("snapshot webcam");
                if (!cam.canSnapshot) text += " - " + gettext("cannot take snapshots");
                found = found || cam.name === current;
                options.push({value: cam.name, text: text});
            });
            if (current && !found) {
                options.push({value: current, text: current + " - " + gettext("not found")});
            }
            return options;
        };

        self.loadWebcams = function () {
            OctoPrint.plugins.layercapture
                .getWebcams()
                .done(function (response) {
                    self.webcams(response.webcams || []);
                    self.webcamsError("");
                })
                .fail(function (xhr) {
                    self.webcams([]);
                    self.webcamsError(
                        _.sprintf(gettext("Could not list OctoPrint's webcams (HTTP %(status)s)"), {
                            status: xhr.status
                        })
                    );
                });
        };

        // ---- test camera

        self.cameraTestOf = function (index) {
            var test = self.cameraTest();
            return test && test.index === index ? test.result : null;
        };

        self.testCamera = function (row) {
            var index = row.index;
            var body = _.pick(self.formData(), cameraTestKeys());
            body.camera = plainCamera(row.camera);
            self.cameraTesting(index);
            self.cameraTest(null);
            var show = function (result) {
                self.cameraTest({index: index, result: result});
            };
            OctoPrint.plugins.layercapture
                .testCamera(body)
                .done(show)
                .fail(function (xhr) {
                    var response = xhr.responseJSON || {};
                    var message;
                    if (xhr.status === 400 && response.errors) {
                        // the test names its camera's fields camera.<field>: shown at this row
                        self.errors(
                            _.map(response.errors, function (e) {
                                var key = String(e.key);
                                if (key === "camera" || key.indexOf("camera.") === 0) {
                                    key = "cameras." + index + key.slice("camera".length);
                                }
                                return {key: key, message: e.message};
                            })
                        );
                        message = gettext("The camera settings are not valid, see above.");
                    } else if (xhr.status === 409) {
                        message = gettext("A capture is running; try again when it is done.");
                    } else {
                        message = _.sprintf(gettext("The test failed (HTTP %(status)s) %(error)s"), {
                            status: xhr.status,
                            error: response.error || ""
                        });
                    }
                    show({ok: false, error: message});
                })
                .always(function () {
                    self.cameraTesting(null);
                });
        };

        self.cameraTestText = function (result) {
            if (!result.ok) return result.error || gettext("The camera gave no image");
            return _.sprintf(
                gettext("%(camera)s: %(width)sx%(height)s, %(size)s in %(seconds)s s"),
                {
                    camera: result.camera || "",
                    width: result.width,
                    height: result.height,
                    size: formatSize(result.size_bytes),
                    seconds: Number(result.duration_s || 0).toFixed(2)
                }
            );
        };

        // ---- OctoPrint callbacks

        self.onBeforeBinding = function () {
            self.s = self.settingsViewModel.settings.plugins[PLUGIN];
            ko.pureComputed(function () {
                return ko.toJSON(self.s);
            })
                .extend({rateLimit: {timeout: 250, method: "notifyWhenChangesStop"}})
                .subscribe(function () {
                    if (self.shown && self.canValidate()) self.check();
                });
        };

        self.onAllBound = function () {
            // Checks our values with the server before OctoPrint saves, so an invalid value
            // is never sent: the dialog stays open and the errors show next to the fields.
            var settingsViewModel = self.settingsViewModel;
            var save = settingsViewModel.saveData;
            settingsViewModel.saveData = function (data) {
                var args = arguments;
                if (data !== undefined || !self.canValidate() || !self.isChanged()) {
                    return save.apply(settingsViewModel, args);
                }
                var deferred = $.Deferred();
                self.check().done(function (errors) {
                    if (errors.length) {
                        self.revealErrors();
                        deferred.reject(errors);
                        return;
                    }
                    save.apply(settingsViewModel, args).then(deferred.resolve, deferred.reject);
                });
                return deferred.promise();
            };
        };

        self.onSettingsShown = function () {
            self.shown = true;
            self.errors([]);
            self.cameraTest(null);
            if (self.canValidate()) {
                self.check();
                self.loadWebcams();
            }
        };

        self.onSettingsHidden = function () {
            self.shown = false;
        };

        self.onDataUpdaterPluginMessage = function (plugin, data) {
            if (plugin !== PLUGIN || !data) return;
            if (data.type === "calibration") self.calibration(data.calibration);
            if (data.type === "settings_rejected") self.errors(data.errors || []);
        };
    }

    OCTOPRINT_VIEWMODELS.push({
        construct: LayerCaptureSettingsViewModel,
        dependencies: ["settingsViewModel", "loginStateViewModel", "accessViewModel"],
        elements: ["#settings_plugin_layercapture"]
    });
});
