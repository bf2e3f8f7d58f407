(function (global, factory) {
    if (typeof define === "function" && define.amd) {
        define(["OctoPrintClient"], factory);
    } else {
        factory(global.OctoPrintClient);
    }
})(this, function (OctoPrintClient) {
    var OctoPrintLayerCaptureClient = function (base) {
        this.base = base;
    };

    OctoPrintLayerCaptureClient.prototype.url = function (path) {
        return this.base.getBlueprintUrl("layercapture") + path;
    };

    OctoPrintLayerCaptureClient.prototype.getStatus = function (opts) {
        return this.base.get(this.url("status"), opts);
    };

    OctoPrintLayerCaptureClient.prototype.validateSettings = function (data, opts) {
        return this.base.postJson(this.url("settings/validate"), data, opts);
    };

    OctoPrintClient.registerPluginComponent("layercapture", OctoPrintLayerCaptureClient);
    return OctoPrintLayerCaptureClient;
});
