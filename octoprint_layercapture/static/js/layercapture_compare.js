/*
 * Layer Capture tab: the image viewer's stepping and compare modes, and deep links.
 *
 * - Step one grid position through the print's layers (buttons, left/right keys).
 * - Compare two layers of the same position: side by side, or a difference view drawn on
 *   a canvas in the browser (pixels whose colour changed by more than the slider's value
 *   are red over a dimmed picture of the layer shown).
 * - Deep links: #tab_plugin_layercapture?print=<id>&layer=<n>&pos=<p>[&compare=<m>&mode=side|diff]
 *   open the print, the layer and the position (and the compare mode); <p> is the position's
 *   number as the tab shows it (1 to n). While the viewer is
 *   open the address bar holds its link (history.replaceState, so OctoPrint's tab switching
 *   is not triggered).
 * Used by the tab's view model (layercapture_tab.js).
 */
(function (global) {
    "use strict";

    var TAB = "#tab_plugin_layercapture";
    var VIEWER = "#layercapture_viewer";
    var DIFF_WIDTH = 960; // the difference is computed at most this wide
    var MODES = ["single", "side", "diff"];

    function parseLink(hash) {
        if (!hash || hash.indexOf(TAB + "?") !== 0) return null;
        var params = {};
        _.each(hash.slice(TAB.length + 1).split("&"), function (pair) {
            var parts = pair.split("=");
            if (parts.length === 2) params[parts[0]] = decodeURIComponent(parts[1]);
        });
        var whole = function (value) {
            return /^\d{1,6}$/.test(value || "") ? Number(value) : null;
        };
        if (!/^[0-9a-f]{16}$/.test(params.print || "")) return null;
        var number = whole(params.pos);
        return {
            print: params.print,
            layer: whole(params.layer),
            pos: number ? number - 1 : null, // the index
            compare: whole(params.compare),
            mode: _.contains(MODES, params.mode) ? params.mode : null
        };
    }

    function loadImage(url) {
        return new Promise(function (resolve, reject) {
            var image = new Image();
            image.onload = function () {
                resolve(image);
            };
            image.onerror = function () {
                reject(new Error(url));
            };
            image.src = url;
        });
    }

    function pixelsOf(image, width, height) {
        var canvas = document.createElement("canvas");
        canvas.width = width;
        canvas.height = height;
        var context = canvas.getContext("2d");
        context.drawImage(image, 0, 0, width, height);
        return context.getImageData(0, 0, width, height).data;
    }

    function LayerCaptureCompare(tab) {
        var self = this;
        self.tab = tab;
        self.printId = ko.observable(null);
        self.layers = ko.observableArray([]); // every layer of the print, lowest first
        self.position = ko.observable(null);
        self.layerNumber = ko.observable(null);
        self.mode = ko.observable("single");
        self.otherNumber = ko.observable(null);
        self.threshold = ko.observable(32);
        self.diffText = ko.observable("");
        self.diffPercent = ko.observable(null);
        self.pending = null; // a deep link to open once the tab is shown
        self._pixels = {}; // url + size -> pixel data, for a quick slider

        // the layers that have an image at the position, with that image
        self.stops = ko.pureComputed(function () {
            var index = self.position();
            return _.compact(
                _.map(self.layers(), function (layer) {
                    var image = _.findWhere(layer.images, {index: index});
                    return image ? {layer: layer, image: image} : null;
                })
            );
        });

        self.at = ko.pureComputed(function () {
            return _.findIndex(self.stops(), function (stop) {
                return stop.layer.layer === self.layerNumber();
            });
        });

        self.canStep = function (delta) {
            var next = self.at() + delta;
            return self.at() >= 0 && next >= 0 && next < self.stops().length;
        };

        self.stepText = ko.pureComputed(function () {
            if (self.at() < 0) return "";
            return _.sprintf(gettext("Layer %(layer)s: %(n)s of %(total)s at position %(number)s"), {
                layer: self.layerNumber(),
                n: self.at() + 1,
                total: self.stops().length,
                number: self.position() + 1
            });
        });

        self.compareOptions = ko.pureComputed(function () {
            return _.map(
                _.reject(self.stops(), function (stop) {
                    return stop.layer.layer === self.layerNumber();
                }),
                function (stop) {
                    return {
                        value: stop.layer.layer,
                        text: _.sprintf(gettext("Layer %(layer)s"), stop.layer)
                    };
                }
            );
        });

        var stopOf = function (number) {
            return _.find(self.stops(), function (stop) {
                return stop.layer.layer === number;
            });
        };

        self.current = ko.pureComputed(function () {
            return stopOf(self.layerNumber()) || null;
        });
        self.other = ko.pureComputed(function () {
            return stopOf(self.otherNumber()) || null;
        });
        self.currentUrl = ko.pureComputed(function () {
            var stop = self.current();
            return stop ? self.tab.fileUrl(stop.image.path) : "";
        });
        self.otherUrl = ko.pureComputed(function () {
            var stop = self.other();
            return stop ? self.tab.fileUrl(stop.image.path) : "";
        });
        self.currentCaption = ko.pureComputed(function () {
            return _.sprintf(gettext("Layer %(layer)s"), {layer: self.layerNumber()});
        });
        self.otherCaption = ko.pureComputed(function () {
            return _.sprintf(gettext("Layer %(layer)s"), {layer: self.otherNumber()});
        });

        self.link = ko.pureComputed(function () {
            if (!self.printId() || self.layerNumber() === null) return TAB;
            var link =
                TAB +
                "?print=" +
                encodeURIComponent(self.printId()) +
                "&layer=" +
                self.layerNumber() +
                "&pos=" +
                (self.position() + 1);
            if (self.mode() !== "single" && self.otherNumber() !== null) {
                link += "&compare=" + self.otherNumber() + "&mode=" + self.mode();
            }
            return link;
        });

        // ---- opening and stepping

        self.loadLayers = function (printId) {
            if (self.printId() === printId && self.layers().length) {
                return $.Deferred().resolve().promise();
            }
            self.printId(printId);
            self.layers([]);
            self._pixels = {};
            return self.tab
                .client()
                .getLayers(printId, 0, 2000)
                .done(function (answer) {
                    if (self.printId() === printId) self.layers(answer.layers);
                });
        };

        // the viewer opens on (layer, image) of the print open in the gallery
        self.open = function (printId, layer, image) {
            if (self.printId() !== printId) self.mode("single");
            if (self.printId() !== printId || self.position() !== image.index) {
                self.otherNumber(null); // chosen again for this position
            }
            self.position(image.index);
            self.layerNumber(layer.layer);
            self.loadLayers(printId).done(function () {
                self.pickOther();
                self.remember();
            });
            self.remember();
            $(VIEWER)
                .off("hidden.layercapture")
                .on("hidden.layercapture", function () {
                    self.forget();
                });
        };

        self.step = function (delta) {
            if (!self.canStep(delta)) return;
            var stop = self.stops()[self.at() + delta];
            self.layerNumber(stop.layer.layer);
            if (self.otherNumber() === stop.layer.layer) self.pickOther();
            self.tab.showImage(stop.layer, stop.image);
            self.remember();
        };

        // compare with the layer before (or the one after, for the first)
        self.pickOther = function () {
            if (self.otherNumber() !== null && self.other() && self.otherNumber() !== self.layerNumber()) {
                return;
            }
            var stops = self.stops();
            var at = self.at();
            var pick = stops[at - 1] || stops[at + 1] || null;
            self.otherNumber(pick ? pick.layer.layer : null);
        };

        self.setMode = function (mode) {
            self.pickOther();
            self.mode(mode);
            self.remember();
        };

        self.otherNumber.subscribe(function () {
            self.remember();
        });

        // ---- the difference view

        self.draw = function () {
            if (self.mode() !== "diff" || !self.current() || !self.other()) return;
            var canvas = document.querySelector(VIEWER + " .lc-diff-canvas");
            if (!canvas) return;
            var urls = [self.currentUrl(), self.otherUrl()];
            var threshold = Number(self.threshold());
            Promise.all(_.map(urls, loadImage))
                .then(function (images) {
                    if (self.currentUrl() !== urls[0] || self.otherUrl() !== urls[1]) return;
                    var width = Math.min(images[0].naturalWidth, DIFF_WIDTH);
                    var height = Math.max(
                        1,
                        Math.round((images[0].naturalHeight * width) / images[0].naturalWidth)
                    );
                    var pixels = _.map(images, function (image, i) {
                        var key = urls[i] + "@" + width + "x" + height;
                        if (!self._pixels[key]) self._pixels[key] = pixelsOf(image, width, height);
                        return self._pixels[key];
                    });
                    canvas.width = width;
                    canvas.height = height;
                    var context = canvas.getContext("2d");
                    var out = context.createImageData(width, height);
                    var a = pixels[0];
                    var b = pixels[1];
                    var o = out.data;
                    var changed = 0;
                    for (var i = 0; i < a.length; i += 4) {
                        var d = Math.max(
                            Math.abs(a[i] - b[i]),
                            Math.abs(a[i + 1] - b[i + 1]),
                            Math.abs(a[i + 2] - b[i + 2])
                        );
                        if (d > threshold) {
                            o[i] = 255;
                            o[i + 1] = Math.max(0, 160 - d);
                            o[i + 2] = 40;
                            changed++;
                        } else {
                            var grey = (a[i] * 0.3 + a[i + 1] * 0.59 + a[i + 2] * 0.11) * 0.35;
                            o[i] = o[i + 1] = o[i + 2] = grey;
                        }
                        o[i + 3] = 255;
                    }
                    context.putImageData(out, 0, 0);
                    var percent = (100 * changed) / (width * height);
                    self.diffPercent(percent);
                    self.diffText(
                        _.sprintf(
                            gettext(
                                "%(percent)s%% of the picture differs by more than %(threshold)s (of 255) between layer %(a)s and layer %(b)s"
                            ),
                            {
                                percent: percent.toFixed(1),
                                threshold: threshold,
                                a: self.layerNumber(),
                                b: self.otherNumber()
                            }
                        )
                    );
                })
                .catch(function () {
                    self.diffPercent(null);
                    self.diffText(gettext("The images could not be loaded"));
                });
        };

        ko.computed(function () {
            // redraw when any of these change
            self.mode();
            self.currentUrl();
            self.otherUrl();
            self.threshold();
            _.defer(self.draw);
        });

        // ---- keys and deep links

        $(document).on("keydown.layercapture", function (event) {
            if (!$(VIEWER).is(":visible")) return;
            if ($(event.target).is("input, select, textarea")) return;
            if (event.key === "ArrowLeft") {
                self.step(-1);
                event.preventDefault();
            } else if (event.key === "ArrowRight") {
                self.step(1);
                event.preventDefault();
            }
        });

        self.remember = function () {
            if ($(VIEWER).is(":visible") && window.history && history.replaceState) {
                history.replaceState(null, "", self.link());
            }
        };

        self.forget = function () {
            if (parseLink(window.location.hash) && window.history && history.replaceState) {
                history.replaceState(null, "", TAB);
            }
        };

        // A deep link in the address bar: kept to open once the tab shows, and the bar set
        // to the plain tab so OctoPrint's tab switching (which knows only tab names) picks
        // this tab instead of the first.
        self.takeLink = function () {
            var link = parseLink(window.location.hash);
            if (!link) return false;
            self.pending = link;
            if (window.history && history.replaceState) history.replaceState(null, "", TAB);
            return true;
        };

        $(window).on("hashchange.layercapture", function () {
            if (self.takeLink() && self.tab.tabActive) _.defer(self.openPending);
        });

        self.openPending = function () {
            var link = self.pending;
            self.pending = null;
            if (!link || !self.tab.canView()) return;
            self.tab
                .client()
                .getPrint(link.print)
                .done(function (print) {
                    self.tab.openPrint(print);
                    self.loadLayers(print.id).done(function () {
                        var layer =
                            _.find(self.layers(), function (candidate) {
                                return candidate.layer === link.layer;
                            }) || self.layers()[0];
                        if (!layer) return;
                        var image =
                            _.findWhere(layer.images, {index: link.pos}) || layer.images[0];
                        if (!image) return;
                        self.tab.openImage(layer, image);
                        if (link.mode && stopOf(link.compare)) {
                            self.otherNumber(link.compare);
                            self.setMode(link.mode);
                        }
                    });
                })
                .fail(function (xhr) {
                    self.tab.galleryError(
                        _.sprintf(gettext("The linked print could not be opened (HTTP %(status)s)"), {
                            status: xhr.status
                        })
                    );
                });
        };

        self.takeLink(); // the page was opened with a deep link
    }

    global.LayerCaptureCompare = LayerCaptureCompare;
})(window);
