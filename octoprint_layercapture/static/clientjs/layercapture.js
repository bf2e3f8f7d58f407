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

    function page(offset, limit) {
        var query = {};
        if (offset !== undefined) query.offset = offset;
        if (limit !== undefined) query.limit = limit;
        return $.isEmptyObject(query) ? "" : "?" + $.param(query);
    }

    function encodePath(path) {
        return _.map(String(path).split("/"), encodeURIComponent).join("/");
    }

    OctoPrintLayerCaptureClient.prototype.getStatus = function (opts) {
        return this.base.get(this.url("status"), opts);
    };

    OctoPrintLayerCaptureClient.prototype.validateSettings = function (data, opts) {
        return this.base.postJson(this.url("settings/validate"), data, opts);
    };

    OctoPrintLayerCaptureClient.prototype.getPrints = function (offset, limit, opts) {
        return this.base.get(this.url("prints") + page(offset, limit), opts);
    };

    OctoPrintLayerCaptureClient.prototype.getPrint = function (id, opts) {
        return this.base.get(this.url("prints/" + encodeURIComponent(id)), opts);
    };

    OctoPrintLayerCaptureClient.prototype.getLayers = function (id, offset, limit, opts) {
        return this.base.get(
            this.url("prints/" + encodeURIComponent(id) + "/layers") + page(offset, limit),
            opts
        );
    };

    OctoPrintLayerCaptureClient.prototype.deletePrint = function (id, opts) {
        return this.base.delete(this.url("prints/" + encodeURIComponent(id)), opts);
    };

    OctoPrintLayerCaptureClient.prototype.rescan = function (opts) {
        return this.base.postJson(this.url("gallery/rescan"), {}, opts);
    };

    OctoPrintLayerCaptureClient.prototype.getVideos = function (id, opts) {
        return this.base.get(this.url("prints/" + encodeURIComponent(id) + "/videos"), opts);
    };

    // target: {target: "all"} | {target: "grid"} | {target: "position", index: 4}
    OctoPrintLayerCaptureClient.prototype.renderVideos = function (id, target, opts) {
        return this.base.postJson(
            this.url("prints/" + encodeURIComponent(id) + "/videos"),
            target,
            opts
        );
    };

    OctoPrintLayerCaptureClient.prototype.getRenderJobs = function (opts) {
        return this.base.get(this.url("videos/jobs"), opts);
    };

    OctoPrintLayerCaptureClient.prototype.cancelRender = function (jobId, opts) {
        return this.base.delete(this.url("videos/jobs/" + encodeURIComponent(jobId)), opts);
    };

    OctoPrintLayerCaptureClient.prototype.getWebcams = function (opts) {
        return this.base.get(this.url("webcams"), opts);
    };

    OctoPrintLayerCaptureClient.prototype.testCamera = function (data, opts) {
        return this.base.postJson(this.url("camera/test"), data, opts);
    };

    OctoPrintLayerCaptureClient.prototype.getFile = function (path, opts) {
        return this.base.get(this.url("files/" + encodePath(path)), opts);
    };

    // Plain URLs for <img src> and download links (served by the tornado file routes)
    OctoPrintLayerCaptureClient.prototype.fileUrl = function (path) {
        return this.base.getBaseUrl() + this.url("files/" + encodePath(path));
    };

    // every camera's images, or only those of camera ``camera`` (a name of the print's cameras)
    OctoPrintLayerCaptureClient.prototype.zipUrl = function (id, camera) {
        var url = this.base.getBaseUrl() + this.url("download/" + encodeURIComponent(id) + ".zip");
        return camera ? url + "?" + $.param({camera: camera}) : url;
    };

    // The print as a Hugging Face ImageFolder dataset (images, metadata.jsonl, toolpaths)
    OctoPrintLayerCaptureClient.prototype.exportUrl = function (id) {
        return this.base.getBaseUrl() + this.url("export/" + encodeURIComponent(id) + ".zip");
    };

    OctoPrintClient.registerPluginComponent("layercapture", OctoPrintLayerCaptureClient);
    return OctoPrintLayerCaptureClient;
});
