"""The HTTP surface every later API stands on: discovery files, versions, errors, CORS."""

import pytest

CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "access-control-allow-headers": "X-Requested-With, Content-Type, Authorization, Date",
}


def assert_json_with_cors(response):
    assert response.headers["content-type"] == "application/json"
    for name, value in CORS.items():
        assert response.headers.get(name) == value, name
    return response.json()


def test_well_known_server_and_client_derive_from_public_baseurl(server):
    assert assert_json_with_cors(server.get("/.well-known/matrix/server")) == {
        "m.server": f"localhost:{server.port}"
    }
    assert assert_json_with_cors(server.get("/.well-known/matrix/client")) == {
        "m.homeserver": {"base_url": f"http://localhost:{server.port}"}
    }


def test_well_known_support_lists_the_configured_contact(server):
    body = assert_json_with_cors(server.get("/.well-known/matrix/support"))
    assert body == {"contacts": [{"role": "m.role.admin", "matrix_id": "@admin:example.org",
                                  "email_address": "admin@example.org"}]}


def test_versions_stop_before_authenticated_media_and_federation_version_names_us(server):
    versions = assert_json_with_cors(server.get("/_matrix/client/versions"))
    assert "v1.1" in versions["versions"] and "v1.10" in versions["versions"]
    # v1.11 (authenticated media) is served; v1.12 and later are not listed yet.
    assert "v1.11" in versions["versions"] and "v1.12" not in versions["versions"]
    assert versions["unstable_features"] == {"org.matrix.msc4222": True,
                                             "org.matrix.simplified_msc3575": True,
                                             "org.matrix.msc2965": True}
    fed = assert_json_with_cors(server.get("/_matrix/federation/v1/version"))
    assert fed["server"]["name"] == "matrix-edge"
    assert fed["server"]["version"]


@pytest.mark.parametrize("path", ["/", "/favicon.ico", "/_matrix/client/v3/nonexistent",
                                  "/_matrix/client/versions/extra", "/_matrix/%ZZ", "/.well-known/matrix/"])
def test_unknown_paths_get_m_unrecognized_404(server, path):
    response = server.get(path)
    assert response.status_code == 404
    body = assert_json_with_cors(response)
    assert body["errcode"] == "M_UNRECOGNIZED" and body["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_wrong_method_gets_m_unrecognized_405(server, method):
    response = server.request(method, "/_matrix/key/v2/server", data=b"{}")
    assert response.status_code == 405
    assert assert_json_with_cors(response)["errcode"] == "M_UNRECOGNIZED"


def test_cors_preflight_is_answered_on_client_paths(server):
    response = server.request("OPTIONS", "/_matrix/client/v3/login", headers={
        "Origin": "https://app.element.io", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 204
    for name, value in CORS.items():
        assert response.headers.get(name) == value
    assert response.content == b""


def test_head_is_get_without_a_body(server):
    response = server.request("HEAD", "/.well-known/matrix/client")
    assert response.status_code == 200
    assert response.content == b""
