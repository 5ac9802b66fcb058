"""Every word the web pages show, by key: one catalogue per language (English today).

Templates and page code name a key (`t("signup.title")`) and give its `{fields}` as keyword
arguments; no text is written in a template or a handler. A translation is one more dict with
the same keys in `CATALOGUES`, chosen from the browser's Accept-Language
(`tests/test_web_pages.py` checks that each language has every key and that every key is
used). Country names come from `phonenumbers`' own translated geocoding data.
"""

from __future__ import annotations

from functools import cache

EN: dict[str, str] = {
    # The frame of every page.
    "site.name": "Smart contacts",
    "site.footer": "Your account works with any SIP app, on {domain}.",
    "page.error_prefix": "Error:",
    "nav.skip": "Skip to the main content",
    "nav.label": "Main",
    "nav.account": "Your account",
    "nav.setup": "Set up an app",
    "nav.signin": "Sign in",
    "nav.signup": "Create an account",
    "nav.signout": "Sign out",
    "nav.back_account": "Back to your account",
    # Forms.
    "form.optional": "(optional)",
    "form.error_prefix": "Error:",
    "form.country": "Country of the number",
    "form.phone": "Mobile phone number",
    "form.phone_hint": "For example {national}, or {international} with its country code.",
    "form.phone_hint_any": "With its country code if it is from another country.",
    "form.username": "Username",
    "form.code": "Code from the SMS",
    "form.code_hint": "The {digits} digits we sent.",
    "form.password": "Password",
    "form.password_hint": "At least {minimum} characters.",
    "form.send_code": "Send me a code",
    "form.show_password": "Show",
    "form.hide_password": "Hide",
    "error.summary": "There is a problem",
    # The home page.
    "home.title": "Welcome",
    "home.heading": "Find your friends in your SIP app",
    "home.intro": "Sign up with your mobile number: your SIP app then shows which of your "
    "contacts use it too, and whether they are online.",
    "home.signup": "Create an account",
    "home.signin": "Sign in",
    "home.how": "How it works",
    "home.step1": "Create your account with your mobile number and a code we send by SMS.",
    "home.step2": "Set up your app: scan a QR code with Linphone, or type the settings into "
    "any other SIP app.",
    "home.step3": "Your app shows which of your contacts have an account, and keeps it up to date.",
    # Sign-up.
    "signup.title": "Create an account",
    "signup.intro": "Your number is how your friends find you. We send it a code to prove "
    "it is yours.",
    "signup.username_hint": "3 to 64 lower-case letters, digits, dots, dashes or "
    "underscores. Without one, your number is your username.",
    "signup.have_account": "Already have an account?",
    "signup.signin_link": "Sign in",
    "signup.code_title": "Enter the code and choose a password",
    "signup.password": "Choose a password",
    "signup.submit": "Create my account",
    # The code step of every flow.
    "code.sent": "We sent a code by SMS to {phone}. It works for {minutes} minutes.",
    "code.username": "Your username will be {username}.",
    "code.resend": "Send a new code",
    "code.other_number": "Use another number",
    "code.resent": "We sent a new code.",
    # Sign-in and recovery.
    "signin.title": "Sign in",
    "signin.identifier": "Username or phone number",
    "signin.identifier_hint": "A number with its country code, for example +33 6 12 34 56 78.",
    "signin.submit": "Sign in",
    "signin.forgot": "Forgot your password?",
    "signin.no_account": "No account yet?",
    "signin.signup_link": "Create one",
    "recover.title": "Forgot your password?",
    "recover.intro": "Enter the number of your account. We send it a code, then you choose "
    "a new password. Your devices will have to sign in again with it.",
    "recover.code_title": "Enter the code and choose a new password",
    "recover.password": "New password",
    "recover.submit": "Set my new password",
    # The account.
    "account.title": "Your account",
    "account.sip_address": "SIP address",
    "account.username": "Username",
    "account.phone": "Phone number",
    "account.no_phone": "None",
    "account.phone_change": "Change your number",
    "account.phone_add": "Add a number",
    "account.find_heading": "Who can find you",
    "account.find_legend": "People who have my number in their contacts can find me",
    "account.find_yes": "Yes: their app shows that I have an account, and my SIP address",
    "account.find_no": "No: nobody finds me by my number",
    "account.find_save": "Save",
    "account.manage_heading": "Manage",
    "account.link_setup": "Set up an app",
    "account.link_devices": "Signed-in devices",
    "account.link_password": "Change your password",
    "account.link_number": "Change or remove your number",
    "account.link_export": "Download your data",
    "account.link_delete": "Delete your account",
    "password.title": "Change your password",
    "password.intro": "Your devices will have to sign in again with the new password.",
    "password.current": "Current password",
    "password.new": "New password",
    "password.submit": "Change my password",
    "number.title": "Your phone number",
    "number.current": "Your number is {phone}.",
    "number.none": "Your account has no number: nobody can find you by one.",
    "number.new_heading": "Use another number",
    "number.add_heading": "Add a number",
    "number.intro": "We send the number a code to prove it is yours. If it belonged to "
    "another account, it moves to yours.",
    "number.code_title": "Enter the code",
    "number.submit": "Use this number",
    "number.remove_heading": "Remove your number",
    "number.remove_intro": "Nobody will find you by it any more, and you will not be able to "
    "recover your password with it.",
    "number.remove_submit": "Remove my number",
    "delete.title": "Delete your account",
    "delete.intro": "Deleting {sip_uri} cannot be undone:",
    "delete.effect_signin": "you can no longer sign in, here or in any app;",
    "delete.effect_devices": "your devices are signed out and their contact lists stop updating;",
    "delete.effect_number": "your username and your number are freed, and nobody finds you "
    "by them;",
    "delete.effect_data": "what the service keeps about you is deleted.",
    "delete.final": "Enter your password to confirm.",
    "delete.password": "Your password",
    "delete.submit": "Delete my account",
    "delete.cancel": "Keep my account",
    "devices.title": "Signed-in devices",
    "devices.intro": "The phones and apps signed in to your account with SIP, most recently "
    "seen first.",
    "devices.unnamed": "A device",
    "devices.app": "App",
    "devices.unknown_app": "Not told by the app",
    "devices.seen": "Last seen",
    "devices.doing": "Signed in for",
    "devices.registered": "calls and online status",
    "devices.subscribed": "your contact list",
    "devices.sign_out": "Sign out this device",
    "devices.keep_out": "A device signed out can sign in again with your password. To keep it "
    "out, also change your password:",
    "devices.none": "No device is signed in to your account now.",
    "devices.time": "{date} at {time} UTC",
    "setup.title": "Set up an app",
    "setup.linphone_heading": "Linphone",
    "setup.linphone_intro": "Make a QR code, then scan it with Linphone on the phone to set "
    "up (in its assistant: Fetch remote configuration, then QR code). The app gets your "
    "account, the server and your contact list; you do not type anything.",
    "setup.make_link": "Make a QR code for a phone",
    "setup.new_link": "Make another QR code",
    "setup.scan": "Scan this code with Linphone on the phone to set up, within {minutes} minutes.",
    "setup.qr_alt": "QR code of your set-up link",
    "setup.link_intro": "Or open this link on the phone, or type it in Linphone's assistant "
    "(Fetch remote configuration):",
    "setup.copy": "Copy the link",
    "setup.copied": "Copied",
    "setup.once": "The code and the link work once: make one for each phone. Do not share "
    "them: they set up your account.",
    "setup.other_heading": "Other SIP apps",
    "setup.other_intro": "Type these settings into your app's SIP account settings:",
    "setup.sip_address": "SIP address",
    "setup.username": "Username",
    "setup.password": "Password",
    "setup.password_yours": "Your account's password",
    "setup.domain": "Domain (realm)",
    "setup.proxy": "Server (outbound proxy)",
    "setup.list": "Contact list (resource list) address",
    "setup.list_hint": "To see which of your contacts have an account, turn on presence for "
    "your contacts and subscribe your contact list to that address, if your app can.",
    "request.title": "Create an account in your app",
    "request.intro": "An app asks to create an account. Confirm that you are there: your "
    "browser does a short calculation (a second or two on a phone), then you go back to the "
    "app.",
    "request.submit": "Confirm and go back to the app",
    "request.working": "Checking…",
    "request.failed": "The check did not work. Try again.",
    "request.noscript": "This check needs JavaScript: turn it on for this page, or create "
    "your account on this site instead.",
    "request.not_you": "If you did not ask for an account, close this page: nothing happens.",
    "request.done": "Done. Go back to the app: it goes on with creating your account.",
    "request.invalid_title": "This link no longer works",
    "request.invalid_body": "It has expired or was used. Ask the app for a new one, or create "
    "your account on this site.",
    "request.signup": "Create an account here",
    # Notices after an action.
    "done.created": "Your account is ready. Set up your app to find your friends.",
    "done.recovered_signup": "This number already had an account: its password is now the "
    "one you chose, and its devices must sign in again.",
    "done.recovered": "Your password is changed. Your devices must sign in again with it.",
    "done.password": "Your password is changed. Your devices must sign in again with it.",
    "done.discoverable": "Saved.",
    "done.number": "Your number is changed.",
    "done.number_removed": "Your number is removed.",
    "done.signed_out": "You are signed out.",
    "done.session_ended": "Your session ended. Sign in again.",
    "done.device_signed_out": "The device is signed out.",
    "done.device_gone": "This device was already signed out.",
    "done.deleted": "Your account is deleted, and your devices are being signed out.",
    # Pages that only tell something.
    "forbidden.title": "This form has expired",
    "forbidden.body": "Go back, reload the page and try again. This site needs cookies to "
    "keep your forms safe.",
    "notfound.title": "Page not found",
    "notfound.body": "There is no page at this address.",
    "badform.title": "This form could not be read",
    "badform.body": "Go back, reload the page and try again.",
    "busy.title": "The service is busy",
    "busy.body": "Try again in a few seconds.",
    "internal.title": "Something went wrong",
    "internal.body": "We could not do this. Try again in a moment.",
    "message.home": "Go to the home page",
    # Errors next to a field or above a form.
    "error.required": "Fill this in.",
    "error.phone_invalid": "Enter a valid mobile number, with its country code if it is not "
    "from the country chosen.",
    "error.phone_region": "We cannot send SMS to numbers of this country.",
    "error.phone_not_mobile": "Enter a mobile number: we can only send codes to mobiles.",
    "error.phone_already_yours": "This number is already on your account.",
    "error.username_invalid": "Use 3 to 64 lower-case letters, digits, dots, dashes or "
    "underscores, not only digits.",
    "error.username_taken": "This username is taken. Choose another one; we will send a new code.",
    "error.code_wrong": "This code does not work: it is wrong, or it has expired. Check the "
    "SMS, or ask for a new code.",
    "error.code_format": "Enter the digits of the code.",
    "error.password_rules": "Use {minimum} to 256 characters.",
    "error.region": "Choose a country from the list.",
    "error.signin_wrong": "The username, number or password is wrong.",
    "error.password_wrong": "This is not your current password.",
    "error.signin_blocked": "Too many failed attempts. Try again in {wait}.",
    "error.rate_limited": "Too many requests for now. Try again in {wait}.",
    "error.sms_unavailable": "We could not send the SMS just now. Try again in a few seconds.",
    "error.unavailable": "The service is busy. Try again in a few seconds.",
    "error.account_disabled": "This account is disabled. Contact the service's operator.",
    "error.recover_no_account": "No account has this number. You can create one with it.",
    "error.no_phone": "Your account has no number.",
    "error.conflict": "Something changed meanwhile. Try again.",
    "error.invalid": "Check this field.",
    "error.internal": "Something went wrong. Try again in a moment.",
    "error.account_pending": "Add a phone number to your account first: until then no app "
    "can sign in to it.",
    "error.human": "We could not check that you are there. Try again.",
    "wait.minute": "a minute",
    "wait.minutes": "{n} minutes",
    "wait.hour": "an hour",
    "wait.hours": "{n} hours",
}

CATALOGUES: dict[str, dict[str, str]] = {"en": EN}
DEFAULT = "en"


def text(key: str, lang: str = DEFAULT, **fields: object) -> str:
    """The words of `key` in `lang` (else English), with its `{fields}` filled in."""
    words = CATALOGUES.get(lang, EN).get(key) or EN[key]
    return words.format(**fields) if fields else words


def language(accept_language: str | None) -> str:
    """The catalogue for an Accept-Language header: the first language we have, by weight."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-", 1)[0]
        if primary in CATALOGUES and weight > 0:
            ranked.append((-weight, i, primary))
    return min(ranked)[2] if ranked else DEFAULT


@cache
def country(region: str, lang: str = DEFAULT) -> str:
    """A region's name in `lang` with its calling code: "France (+33)"."""
    import phonenumbers
    from phonenumbers import geocoder

    example = phonenumbers.example_number(region)
    name = geocoder.country_name_for_number(example, lang) if example else ""
    code = phonenumbers.country_code_for_region(region)
    return f"{name or region} (+{code})"
