import re


def page(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_grid_lists_the_newest_version_of_each_miniapp(client):
    html = page(client, "/")
    assert html.count('class="app-card"') == 3
    assert "Keep short notes and tags in Notes Cloud." in html  # 1.1.0, not 1.0.0
    assert "3 mini-apps" in html


def test_search_and_category_filter(client):
    html = page(client, "/?q=channel")
    assert html.count('class="app-card"') == 1
    assert "Team Chat" in html and "1 of 3 mini-apps match" in html
    html = page(client, "/?category=data")
    assert html.count('class="app-card"') == 1 and "Weather Now" in html
    assert '<option value="data" selected>' in html
    html = page(client, "/?q=zzz")
    assert "No mini-app matches “zzz”" in html


def test_detail_page_shows_auth_fields_hosts_and_actions(client):
    html = page(client, "/miniapps/chat")
    assert "You sign in at <strong>chat.example</strong>" in html.replace("OAuth 2.0: you", "You")
    assert "<code>channels:read</code> <code>chat:write</code>" in html
    assert "<li><code>*.chat.example</code></li>" in html
    assert "dropdown filled from the service (rpc_threads), or typed in when it fails" in html
    assert "group of fields" in html and "list of values" in html and "multi-line text" in html
    assert 'id="action-postMessage"' in html


def test_api_key_detail_shows_the_connect_fields(client):
    html = page(client, "/miniapps/notes")
    assert "A key or token you paste once" in html
    assert "<code>apiKey</code>" in html
    assert "From Settings → API." in html
    assert 'href="/miniapps/notes?version=1.0.0"' in html


def test_unknown_miniapp_is_an_html_404(client):
    response = client.get("/miniapps/nope")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "no mini-app named &#39;nope&#39; in the catalog" in response.get_data(as_text=True)


def test_icons_are_served_locally(client):
    response = client.get("/miniapps/weather/icon")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.get_data(as_text=True).startswith("<svg")
    response.close()
    assert client.get("/miniapps/chat/icon").status_code == 404


def test_pages_load_nothing_from_other_hosts(client):
    for url in ("/", "/miniapps/chat", "/miniapps/notes"):
        html = page(client, url)
        assert "http://" not in html.replace("http://127.0.0.1", "")
        assert "src=\"https://" not in html and "href=\"https://" not in html.replace(
            'href="https://example.com"', "")


def cards(html):
    return re.findall(r'<span class="app-card__title">([^<]+)</span>', html)


def test_the_grid_is_paged_and_the_links_keep_the_search(many_app):
    client = many_app.test_client()
    html = page(client, "/")
    assert cards(html) == ["Notes Cloud", "Team Chat"] + [f"Weather {i:02d}" for i in range(1, 23)]
    assert "32 mini-apps, showing 1–24" in html
    assert '<nav class="pager" aria-label="Pages">' in html
    assert '<a rel="next" href="/?page=2">Next page</a>' in html
    assert 'rel="prev"' not in html and "Page 1 of 2" in html

    html = page(client, "/?page=2")
    assert cards(html) == [f"Weather {i:02d}" for i in range(23, 30)] + ["Weather Now"]
    assert "32 mini-apps, showing 25–32" in html
    assert '<a rel="prev" href="/?page=1">Previous page</a>' in html
    assert 'rel="next"' not in html and "Page 2 of 2" in html

    html = page(client, "/?q=weather&category=data&page=2")
    assert "30 of 32 mini-apps match, showing 25–30" in html
    assert '<a rel="prev" href="/?q=weather&amp;category=data&amp;page=1">Previous page</a>' in html


def test_a_page_out_of_range_shows_the_nearest(many_app):
    client = many_app.test_client()
    assert "showing 25–32" in page(client, "/?page=99")
    for wrong in ("0", "-1", "abc", "²"):
        assert "showing 1–24" in page(client, f"/?page={wrong}")
    html = page(client, "/?q=chat&page=5")
    assert cards(html) == ["Team Chat"] and 'class="pager"' not in html
