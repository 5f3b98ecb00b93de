from obs_sync import signing

AK, SK, TS = "globalaktest", "secretkeyexample", "2024-01-01T00:00:00Z"


def test_vector_a() -> None:
    headers = {"content-type": "application/json; charset=UTF-8", "host": "10.22.26.181:28080"}
    path = "/rest/isales/v1/openapi/campaigns/1/queryOBSResultCode"
    query = [("pageSize", "10"), ("pageNum", "1")]
    assert signing.canonical_request("GET", path, query, headers) == (
        "GET\n/rest/isales/v1/openapi/campaigns/1/queryOBSResultCode\npageNum=1&pageSize=10\n"
        "content-type;host\ncontent-type:application%2Fjson%3B%20charset%3DUTF-8\n"
        "host:10.22.26.181%3A28080\n"
    )
    prefix = signing.auth_string_prefix(AK, TS, "content-type;host")
    assert signing.signing_key(SK, prefix) == (
        "beb34821590931121bc480e47f449a8dff60288110814de3cfe93eb8569df6bb"
    )
    assert signing.authorization(AK, SK, TS, "GET", path, query, headers) == (
        "auth-v2/globalaktest/2024-01-01T00:00:00Z/content-type;host/"
        "bf1772557cd317a20b9469c2205d07bc0395f4dd1e8e08d04be8684e33041b4e"
    )


def test_vector_b() -> None:
    headers = {
        "content-length": "22",
        "content-type": "application/json;charset=UTF-8",
        "host": "10.22.26.181:28080",
    }
    body = '{"say":"Hello world!"}'
    text = signing.canonical_request("POST", "/rest/cmsapp/v1/ping", [], headers, body)
    assert text.endswith(
        "\ncontent-length;content-type;host\ncontent-length:22\n"
        "content-type:application%2Fjson%3Bcharset%3DUTF-8\nhost:10.22.26.181%3A28080\n"
        "%7B%22say%22%3A%22Hello%20world%21%22%7D"
    )
    prefix = signing.auth_string_prefix(AK, TS, "content-length;content-type;host")
    assert signing.signing_key(SK, prefix) == (
        "21331931fa8f33c473dda5c9760451ffa73bd95f77d3f2e97df56754df42bd30"
    )
    assert signing.authorization(AK, SK, TS, "POST", "/rest/cmsapp/v1/ping", [], headers, body) == (
        "auth-v2/globalaktest/2024-01-01T00:00:00Z/content-length;content-type;host/"
        "10e707a9b954d01ee5888243c9f1e68e7c727024238bac56d0f5d67d040a6d23"
    )
