$(function () {
    var PLUGIN = "layercapture";

    function LayerCaptureSettingsViewModel(parameters) {
        var self = this;
        self.settingsViewModel = parameters[0];
        self.errors = ko.observableArray([]);
        self.s = null;

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

        self.onBeforeBinding = function () {
            self.s = self.settingsViewModel.settings.plugins.layercapture;
        };

        self.onSettingsShown = function () {
            self.errors([]);
        };

        self.onDataUpdaterPluginMessage = function (plugin, data) {
            if (plugin !== PLUGIN || !data) return;
            if (data.type === "settings_rejected") {
                self.errors(data.errors || []);
            }
        };
    }

    function LayerCaptureTabViewModel(parameters) {
        var self = this;
        self.loginState = parameters[0];
        self.status = ko.observable({state: "idle"});

        self.canView = ko.pureComputed(function () {
            return self.loginState.hasPermissionKo(
                self.loginState.access.permissions.PLUGIN_LAYERCAPTURE_VIEW
            )();
        });

        self.statusText = ko.pureComputed(function () {
            var st = self.status() || {};
            switch (st.state) {
                case "waiting":
                    return gettext("Waiting for the next target layer");
                case "capturing":
                    return _.sprintf(gettext("Capturing layer %(layer)s: %(phase)s %(index)s/%(count)s"), st);
                case "captured":
                    return _.sprintf(gettext("Captured layer %(layer)s (%(images)s images)"), st);
                case "error":
                case "unsupported":
                    return st.message || gettext("Error");
                default:
                    return gettext("Idle");
            }
        });

        self.lastError = ko.pureComputed(function () {
            var st = self.status() || {};
            return st.failures && st.failures.length ? st.failures.join("; ") : "";
        });

        self.refresh = function () {
            if (!self.canView()) return;
            OctoPrint.plugins.layercapture.getStatus().done(function (response) {
                self.status(response.status || {state: "idle"});
            });
        };

        self.onUserLoggedIn = self.refresh;
        self.onStartupComplete = self.refresh;

        self.onDataUpdaterPluginMessage = function (plugin, data) {
            if (plugin !== PLUGIN || !data || data.type !== "status") return;
            self.status(data.status || {state: "idle"});
        };
    }

    OCTOPRINT_VIEWMODELS.push({
        construct: LayerCaptureSettingsViewModel,
        dependencies: ["settingsViewModel"],
        elements: ["#settings_plugin_layercapture"]
    });
    OCTOPRINT_VIEWMODELS.push({
        construct: LayerCaptureTabViewModel,
        dependencies: ["loginStateViewModel"],
        elements: ["#tab_plugin_layercapture"]
    });
});
