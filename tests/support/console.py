"""The admin console in a real browser: Debian's chromium driven by
Playwright, as tests/console.rs sets it up (a CA with agents of tenants
acme and globex, a tenant admin of acme, the example service).

Each step prints what it checked; any failure raises (exit 1). Screenshots
of every page go to $SCREENSHOTS.
"""

import os
import sys

from playwright.sync_api import expect, sync_playwright

URL = os.environ["CA_URL"]
ADMIN = os.environ["ADMIN_TOKEN"]
TENANT_ADMIN = os.environ["TENANT_ADMIN_TOKEN"]
SHOTS = os.environ["SCREENSHOTS"]
TARGET = os.environ["TARGET_AGENT"]  # tenant/env/agent to revoke
BYSTANDER = os.environ["BYSTANDER_AGENT"]  # tenant/env/agent left alone
OTHER_TENANT = os.environ["OTHER_TENANT_AGENT"]  # an agent of globex
TRUST_DOMAIN = os.environ["TRUST_DOMAIN"]
BROWSER = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)
    print(f"screenshot {name}.png")


def spiffe(path):
    t, e, a = path.split("/")
    return f"spiffe://{TRUST_DOMAIN}/tenant/{t}/env/{e}/agent/{a}"


def log_in(page, token):
    page.goto(f"{URL}/ui")
    expect(page).to_have_url(f"{URL}/ui/login")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def no_horizontal_scroll(page, what):
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{what}: the page is {overflow}px wider than the window"


def main():
    with sync_playwright() as p:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = p.chromium.launch(executable_path=BROWSER, args=args)
        # The CA's own certificate names the CA, not 127.0.0.1's browser
        # expectations; what is tested here is the console.
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        # Logging in.
        page.goto(f"{URL}/ui/login")
        shot(page, "login")
        page.get_by_label("Admin token").fill("not-a-token")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_contain_text("not an admin token")
        log_in(page, ADMIN)
        # From here on the browser must report no error (the refused login
        # above was a 401, on purpose).
        errors.clear()
        cookie = next(c for c in context.cookies() if c["name"] == "__Host-agentca_session")
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
        print("logged in; the session cookie is HttpOnly, Secure, SameSite=Strict")

        # The overview.
        expect(page.get_by_text("live certificates").first).to_be_visible()
        expect(page.locator("figure.chart svg")).to_be_visible()
        expect(page.get_by_role("cell", name="globex")).to_be_visible()
        no_horizontal_scroll(page, "overview at 1280x800")
        shot(page, "overview")

        # Keyboard: the first Tab reaches the skip link, then the navigation.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Overview"
        print("keyboard: skip link, then the navigation")

        # Find an agent by name, open it.
        target_name = TARGET.split("/")[2]
        page.get_by_label("Find an agent").fill(target_name)
        page.get_by_label("Find an agent").press("Enter")
        expect(page.get_by_role("heading", name="Agents")).to_be_visible()
        link = page.get_by_role("link", name=spiffe(TARGET))
        expect(link).to_be_visible()
        expect(page.get_by_role("link", name=spiffe(BYSTANDER))).to_have_count(0)
        shot(page, "agents")
        link.click()
        expect(page.get_by_role("heading", name=spiffe(TARGET))).to_be_visible()
        expect(page.get_by_role("heading", name="Live certificates")).to_be_visible()
        shot(page, "agent")

        # Revoke it from the page: without confirming, nothing happens.
        revoke = page.locator("form", has=page.get_by_role("button", name=f"Revoke {target_name}"))
        revoke.get_by_label("Reason").select_option("keyCompromise")
        revoke.get_by_role("button").click()
        # The browser's own check stops the form: it is invalid, and the
        # agent is still enabled on the server.
        assert revoke.evaluate("f => !f.checkValidity()"), "the form was valid without confirming"
        page.reload()
        expect(page.get_by_text("enabled", exact=True).first).to_be_visible()
        expect(page.get_by_role("status")).to_have_count(0)
        revoke.get_by_label("I am sure").check()
        revoke.get_by_role("button").click()
        expect(page.get_by_role("status")).to_contain_text("Revoked")
        expect(page.get_by_text("disabled", exact=True).first).to_be_visible()
        shot(page, "agent-revoked")
        print("revoked from the agent page")

        # The audit page shows it, by this admin, and the trail verifies.
        page.get_by_role("link", name="Audit").click()
        expect(page.get_by_role("status")).to_contain_text("verify")
        page.get_by_label("Action").fill("revoke")
        page.get_by_role("button", name="Filter").click()
        row = page.locator("tr", has=page.get_by_text(spiffe(TARGET), exact=True))
        expect(row.first).to_contain_text("admin admin")
        expect(row.first).to_contain_text("ok")
        shot(page, "audit")
        print("the audit page shows the revocation by admin admin")

        # A form posted without its anti-forgery token is refused, and does nothing.
        bystander_url = f"{URL}/ui/agents/{BYSTANDER}"
        for form in [{"confirm": "yes"}, {"confirm": "yes", "csrf": "forged"}]:
            response = page.request.post(f"{bystander_url}/disable", form=form)
            assert response.status == 403, f"{form}: {response.status}"
        # With its token, a form is still refused from another origin, and
        # does nothing unconfirmed (the server checks, not only the browser).
        page.goto(bystander_url)
        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        response = page.request.post(
            f"{bystander_url}/disable",
            form={"confirm": "yes", "csrf": csrf},
            headers={"Origin": "https://evil.example"},
        )
        assert response.status == 403, f"another origin: {response.status}"
        response = page.request.post(f"{bystander_url}/disable", form={"csrf": csrf})
        assert "Tick" in response.text(), f"unconfirmed: {response.status}"
        page.goto(bystander_url)
        expect(page.get_by_role("button", name="Disable")).to_be_visible()
        print("forms without the anti-forgery token, from another origin, or unconfirmed are refused")

        # Phone width: readable, nothing wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        for path, name in [("/ui", "overview-phone"), (f"/ui/agents/{TARGET}", "agent-phone")]:
            page.goto(f"{URL}{path}")
            no_horizontal_scroll(page, name)
            shot(page, name)
        page.set_viewport_size({"width": 1280, "height": 800})

        # Logging out ends the session, on the server too.
        session = next(c for c in context.cookies() if c["name"] == "__Host-agentca_session")["value"]
        page.goto(f"{URL}/ui")
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(f"{URL}/ui/login")
        page.goto(f"{URL}/ui")
        expect(page).to_have_url(f"{URL}/ui/login")
        replay = browser.new_context(ignore_https_errors=True)
        replay.add_cookies([{"name": "__Host-agentca_session", "value": session, "url": f"{URL}/"}])
        replayed = replay.new_page()
        replayed.goto(f"{URL}/ui")
        expect(replayed).to_have_url(f"{URL}/ui/login")
        replay.close()
        print("logged out; the old session cookie no longer works")

        # A tenant admin sees its tenant only.
        tenant = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
        tpage = tenant.new_page()
        log_in(tpage, TENANT_ADMIN)
        expect(tpage.get_by_role("cell", name="globex")).to_have_count(0)
        expect(tpage.get_by_role("link", name="Audit")).to_have_count(0)
        tpage.goto(f"{URL}/ui/agents")
        expect(tpage.get_by_role("link", name=spiffe(BYSTANDER))).to_be_visible()
        expect(tpage.get_by_role("link", name=spiffe(OTHER_TENANT))).to_have_count(0)
        shot(tpage, "tenant-admin-agents")
        response = tpage.goto(f"{URL}/ui/agents/{OTHER_TENANT}")
        assert response.status == 403, response.status
        expect(tpage.get_by_role("alert")).to_be_visible()
        response = tpage.goto(f"{URL}/ui/audit")
        assert response.status == 403, response.status
        print("a tenant admin sees its tenant only")

        assert not errors, f"browser console errors: {errors}"
        browser.close()
    print("console: every check passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the test reads the message
        print(f"console check failed: {e}", file=sys.stderr)
        raise
