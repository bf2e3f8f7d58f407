# Examples for .semgrep/octoprint-plugin.yml, checked by `semgrep --test .semgrep/`.
# Not imported anywhere; ruff ignores this folder.
import os
import pickle
import subprocess

import flask
import octoprint.plugin
import requests
import yaml
from octoprint.access.permissions import Permissions


class Plugin(octoprint.plugin.BlueprintPlugin, octoprint.plugin.SimpleApiPlugin):
    # ruleid: blueprint-route-without-permission
    @octoprint.plugin.BlueprintPlugin.route("/open", methods=["GET"])
    def open_route(self):
        return flask.jsonify(ok=True)

    # ok: blueprint-route-without-permission
    @octoprint.plugin.BlueprintPlugin.route("/guarded", methods=["GET"])
    @Permissions.PLUGIN_X_VIEW.require(403)
    def guarded(self):
        return flask.jsonify(ok=True)

    # ruleid: blueprint-protection-disabled
    def is_blueprint_protected(self):
        return False

    # ok: blueprint-protection-disabled
    def is_blueprint_csrf_protected(self):
        return True

    # ruleid: blueprint-protection-disabled
    def is_template_autoescaped(self):
        return self.flag

    # ruleid: simpleapi-without-permission-check
    def on_api_get(self, request):
        return flask.jsonify(secret=1)

    # ok: simpleapi-without-permission-check
    def on_api_command(self, command, data):
        if not Permissions.PLUGIN_X_MANAGE.can():
            flask.abort(403)
        return None


# ruleid: csrf-exemption
@octoprint.plugin.BlueprintPlugin.csrf_exempt()
def exempted():
    pass


def run(name):
    # ruleid: shell-true
    subprocess.run(f"ls {name}", shell=True)
    # ok: shell-true
    subprocess.run(["ls", name])
    # ruleid: shell-true
    os.system("ls " + name)


def load(data):
    # ruleid: unsafe-deserialisation
    yaml.load(data)
    # ok: unsafe-deserialisation
    yaml.safe_load(data)
    # ruleid: unsafe-deserialisation
    pickle.loads(data)


def fetch(url):
    # ruleid: tls-verification-off
    requests.get(url, verify=False)
    # ok: tls-verification-off
    requests.get(url, timeout=5)


def page(name):
    # ruleid: unescaped-markup
    return flask.render_template_string("<b>" + name + "</b>")
