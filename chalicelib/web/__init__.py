"""The web pages for people: sign up, sign in, manage the account, set up an app.

Server-rendered HTML (`templates/`, one stylesheet and one small script in `static/`), served
by the same Chalice app as the REST API, over the same domain functions (`accounts`, `live`).
`pages` holds the pages, `site` one request's plumbing (session, forms, responses), `security`
the headers, cookies and CSRF tokens, `forms` the posted fields and the errors shown next to
them, `catalogue` every word shown, `render` the templates. Imports `api` (the client address
and body helpers) and every layer below; nothing imports it but app.py.
"""
