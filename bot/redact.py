"""Secret and PII redaction for whatever leaves the process or is kept for audit.

Tickets, hand-over posts, the audit log and exports go through :func:`redact_text`; tool-call arguments through
:func:`redact_arguments`. What is found, and by what:

- service tokens and keys (AWS, Azure storage ``AccountKey=``, GitHub, GitLab, Slack tokens and webhook URLs, Stripe,
  Twilio, SendGrid, npm, PyPI, Discord, Telegram, IBM, JWTs…): the regular-expression detectors of Yelp's
  ``detect-secrets``, used as a library (no scan settings, no verification calls), plus the forms it lacks (Google
  ``AIza…`` keys, OpenAI-style ``sk-…``, ``xapp-``, Discord webhooks, private key blocks);
- credentials in URLs (``postgres://user:pass@…``, ``redis://:pass@…``) and ``Bearer``/``Basic`` authorization;
- ``name: value`` and ``name=value`` assignments whose name says secret (``password``, ``pw``, ``api_key``,
  ``AccountKey``, ``client_secret``…), and the same said in words, in several languages ("my password is …",
  "mein Passwort lautet …", "mot de passe : …", "contraseña: …", "senha: …", "wachtwoord is …");
- PINs, MFA/OTP and verification codes next to a word naming them;
- payment card numbers (Luhn-checked), US social security numbers and IBANs (checked with ``python-stdnum``).

Each finding is replaced by ``[redacted]``; a name before ``:``/``=`` is kept, so a redacted JSON or URL text stays
well-formed. Redaction is idempotent. E-mail addresses, phone numbers, host names and IP addresses are kept: a
helpdesk needs them to act on a ticket.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stdnum import iban, luhn
from stdnum.us import ssn

REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class Finding:
    """A secret in a text: where it is (``text[start:end]``) and what kind it is."""

    start: int
    end: int
    kind: str


# --- detect-secrets' detectors ------------------------------------------------------------------------------------

# Left out on purpose: the keyword and high-entropy plugins (built for source files: they flag hashes, GUIDs and
# error codes in prose), the public-IP plugin (an address is not a secret), Artifactory's (it takes capitalised words
# such as "APPLICATIONS" for passwords), and basic-auth and private-key ones (the URL and key-block rules below redact
# the whole credential, where these find only part of it).
_DETECTORS = (
    "aws.AWSKeyDetector",
    "azure_storage_key.AzureStorageKeyDetector",
    "cloudant.CloudantDetector",
    "discord.DiscordBotTokenDetector",
    "github_token.GitHubTokenDetector",
    "gitlab_token.GitLabTokenDetector",
    "ibm_cloud_iam.IbmCloudIamDetector",
    "ibm_cos_hmac.IbmCosHmacDetector",
    "jwt.JwtTokenDetector",
    "mailchimp.MailchimpDetector",
    "npm.NpmDetector",
    "openai.OpenAIDetector",
    "pypi_token.PypiTokenDetector",
    "sendgrid.SendGridDetector",
    "slack.SlackDetector",
    "softlayer.SoftlayerDetector",
    "square_oauth.SquareOAuthDetector",
    "stripe.StripeDetector",
    "telegram_token.TelegramBotTokenDetector",
    "twilio.TwilioKeyDetector",
)
_VALUE_GROUP_CHARS = 16  # a capture group this long is the secret itself; a shorter one is a prefix such as "glpat"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-+/=]|\.(?=[A-Za-z0-9_-])")


@functools.cache
def _detector_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    # Imported on first use: detect-secrets pulls in requests, which a process that never redacts need not load.
    import importlib

    patterns: list[tuple[str, re.Pattern[str]]] = []
    for path in _DETECTORS:
        module_name, class_name = path.rsplit(".", 1)
        detector = getattr(importlib.import_module(f"detect_secrets.plugins.{module_name}"), class_name)()
        patterns += [(str(detector.secret_type), pattern) for pattern in detector.denylist]
    return tuple(patterns)


def _detector_findings(text: str) -> Iterator[Finding]:
    for kind, pattern in _detector_patterns():
        for match in pattern.finditer(text):
            start, end = match.span()
            groups = [i for i in range(1, (pattern.groups or 0) + 1) if match.group(i)]
            longest = max(groups, key=lambda i: len(match.group(i)), default=None)
            if longest is not None and len(match.group(longest)) >= _VALUE_GROUP_CHARS:
                start, end = match.span(longest)
            # Some detectors stop early (a JWT's signature is matched lazily): take the rest of the token too.
            while end < len(text) and _TOKEN_CHARS.match(text, end):
                end += 1
            yield Finding(start, end, kind)


# --- tokens and credentials detect-secrets has no detector for -----------------------------------------------------

_TOKENS = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-[A-Za-z0-9_-]{16,}"  # OpenAI and look-alikes; the length spares words such as "sk-learn"
    r"|xox[abposr]-[A-Za-z0-9-]{8,}|xapp-[A-Za-z0-9-]{8,}"  # Slack tokens in any layout
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub, also shorter than detect-secrets wants
    r"|gl[a-z]{2,6}-[A-Za-z0-9_-]{20,}"  # GitLab's glpat-, gldt-, glrt-…
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key ids
    r"|https://(?:canary\.|ptb\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]+"
    r"|https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]+"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY( BLOCK)?-----.*?(?:-----END [A-Z ]*PRIVATE KEY( BLOCK)?-----|\Z)"
    r")",
    re.DOTALL,
)
# scheme://user:password@host and scheme://:password@host: the password goes, the user name stays.
_URL_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*:([^\s/@?#]+)@")
_BEARER = re.compile(r"\b(?:Bearer|Authorization:\s*Token)\s+([A-Za-z0-9._~+/=-]{6,})", re.IGNORECASE)
_BASIC = re.compile(r"\bBasic\s+([A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])")


def _token_findings(text: str) -> Iterator[Finding]:
    for match in _TOKENS.finditer(text):
        yield Finding(*match.span(), "token")
    for match in _URL_PASSWORD.finditer(text):
        yield Finding(*match.span(1), "url password")
    for match in _BEARER.finditer(text):
        yield Finding(*match.span(1), "bearer token")
    for match in _BASIC.finditer(text):
        if _is_basic_credential(match.group(1)):
            yield Finding(*match.span(1), "basic credentials")


def _is_basic_credential(value: str) -> bool:
    import base64
    import binascii

    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return ":" in decoded and decoded.isprintable()


# --- secrets named in the text ------------------------------------------------------------------------------------

# A name that, before ":" or "=", marks its value as a secret, code-style: db_password=…, "client_secret": "…".
_SECRET_NAME = (
    r"[\w.-]*(?:pass(?:word|wd|phrase|code)|pwd|secret|token|api[_-]?key|credential|account[_-]?key"
    r"|access[_-]?key|shared[_-]?access[_-]?key|private[_-]?key|passwort|kennwort|contrase[ñn]a|senha|wachtwoord"
    r"|has[łl]o|l[öo]senord|salasana|parol[ae]|пароль)[\w.-]*"
    r"|\b(?:pw|pin|mdp|sig)"
)
_QUOTED = r""""[^"\n]*"|'[^'\n]*'|“[^”\n]*”|«[^»\n]*»"""
_VALUE = rf"""({_QUOTED}|[^\s,;&"'<>]+)"""  # in code and URLs a value ends at a separator…
_SAID_VALUE = rf"""({_QUOTED}|[^\s"'<>]+)"""  # …in a sentence only at a space: "Tr0ub4dor&3" is one password
_ASSIGNED = re.compile(rf"""(?<![\w-])(?:{_SECRET_NAME})["']?[ \t]*(?::=|[:=：])[ \t]*{_VALUE}""", re.IGNORECASE)

# A password said in words: "my password is …", "Passwort lautet …", "mot de passe est …", "the wifi password is …".
_SECRET_WORDS = (
    r"pass(?:word|wd|phrase|code)|(?<=my )pass|pwd|pw|pword|api[ _-]?key|access[ _-]?key|secret(?:[ _-]?key)?"
    r"|client[ _-]secret|(?:access |auth |api |bot )?token|passwort|kennwort|mot de passe|mdp|contrase[ñn]a|clave"
    r"|senha|wachtwoord|has[łl]o|l[öo]senord|adgangskode|passord|salasana|parola|[şs]ifre|пароль|パスワード|密码"
)
_FOR_WHAT = (
    r"(?:\s+(?:for|to|of|on|für|zu|zum|zur|vom|pour|de|du|para|del|da|do|per|voor|van|för|till|dla)"
    r"(?:\s+[^\s:=]+){1,3}?)?"
)
_SAID = (
    r"\s*[:：]\s*|\s+(?:is(?: now| still)?|was|will be|ist(?: jetzt)?|lautet|war|est|était|es|era|è|é|är"
    r"|jest|wynosi|is nu)\s*:?\s+|は|是"
)
_SAID_SECRET = re.compile(rf"(?<![A-Za-z0-9_-])(?:{_SECRET_WORDS}){_FOR_WHAT}(?:{_SAID}){_SAID_VALUE}", re.IGNORECASE)

# Words that follow "password is" or "password:" in ordinary talk about a password, not the password itself.
_NOT_A_SECRET = frozenset(
    """
    a an the it this that my your his her our their its not no never also still just too very so now always
    being been expired expiring wrong incorrect invalid locked blocked disabled rejected accepted correct right
    ok okay fine working broken required needed missing empty blank reset changed change same different old new
    weak strong short long saved stored stuck set unknown forgotten lost about going case sensitive going
    at in on for to of and or but if when after before because which what where how why yes please there here
    required mandatory optional none null n/a na ******** valid invalid active inactive good bad temporary
    printed written shown visible available unavailable easy hard simple complicated secure insecure enough
    shared known personal sent generated
    abgelaufen falsch gesperrt nicht kein keine ungültig richtig korrekt neu alt vergessen der die das ein eine
    expiré expirée incorrect incorrecte bloqué bloquée faux fausse pas le la les un une nouveau ancien oublié
    caducado caducada incorrecto incorrecta bloqueado bloqueada el los las nuevo nueva viejo olvidada
    errado errada expirado expirada não nova velha esquecida scaduta scaduto sbagliata sbagliato bloccata
    verlopen onjuist fout geblokkeerd niet het een nieuw oud vergeten
    wygasło błędne nie nowe stare zapomniane fel utgånget inte nytt gammalt glömt
    """.split()
)
_TRAILING = ".,;:!?)]}»”'\""


def _said_findings(text: str) -> Iterator[Finding]:
    for pattern, kind in ((_ASSIGNED, "assigned secret"), (_SAID_SECRET, "secret in words")):
        for match in pattern.finditer(text):
            start, end = match.span(1)
            value = match.group(1)
            if value.startswith(REDACTED):
                continue
            if value[:1] in "\"'“«":
                start, end = start + 1, end - 1  # keep the quotes, so quoted JSON stays well-formed
            else:
                stripped = value.rstrip(_TRAILING)
                # "Tr0ub4dor&3!" keeps its "!", but a sentence's full stop is not part of the password.
                if stripped and value[len(stripped) :].startswith(("!", "?")) and not value.endswith((".", ",")):
                    stripped = value
                end = start + len(stripped)
            secret = text[start:end]
            if _worth_redacting(secret, assigned=kind == "assigned secret" and "=" in match.group(0)):
                yield Finding(start, end, kind)


def _worth_redacting(value: str, *, assigned: bool) -> bool:
    if not value:
        return False
    if assigned:  # name=value is configuration or code: whatever stands there is the secret
        return True
    return value.casefold() not in _NOT_A_SECRET


# --- one-time codes, PINs, cards, SSNs, IBANs ---------------------------------------------------------------------

_CODE_WORDS = (
    r"pin(?:[ -]?code|[ -]?number)?|code pin|pin-?kod|pinkod|(?:mfa|2fa|two[- ]factor|otp|sms|totp|authenticator"
    r"|verification|security|authentication|auth|login|sign[- ]in|confirmation|recovery|backup|one[- ]time|access"
    r"|reset|unlock|passcode) ?(?:code|pin|number)|otp|passcode|bestätigungscode|sicherheitscode"
    r"|einmalcode|einmalpasswort|prüfcode|freischaltcode|code de (?:vérification|sécurité|confirmation|connexion)"
    r"|code à usage unique|code sms|código(?: de (?:verificación|verificação|seguridad|segurança|acceso|acesso))?"
    r"|codice(?: di (?:verifica|sicurezza|accesso))?|codice otp|verificatiecode|beveiligingscode|inlogcode"
    r"|kod (?:weryfikacyjny|sms|pin|dostępu)|verifieringskod|säkerhetskod|engångskod|vahvistuskod|код"
)
# Between the word and the digits only small words may stand ("my MFA code from the app is 482913"), so a year or a
# count further on ("MFA prompts since 2024") is not taken for a code.
_GAP_WORDS = (
    r"is|was|now|the|my|your|new|current|from|app|sms|text|e-?mail|phone|authenticator|number|code|pin|of|for|it|"
    r"ist|lautet|war|est|était|es|era|é|è|mein|meine|mon|ma|mi|minha|meu|mijn|il|la|le|el|de|da|do|der|die|das|är"
)
_CODE = re.compile(
    rf"(?<![\w-])(?:{_CODE_WORDS})(?:[^\w\n]+(?:{_GAP_WORDS})){{0,4}}?[^\w\n]+(\d{{3}}[ -]\d{{3}}|\d{{4,8}})"
    r"(?![\d.,:/-]\d)",
    re.IGNORECASE,
)
_CARD = re.compile(r"(?<![\d-])[2-6](?:[ -]?\d){12,18}(?![\d-])")  # issuer numbers start with 2-6
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_SSN_SAID = re.compile(
    r"\b(?:ssn|social security(?: number| no\.?)?)\W{1,4}(?:(?:is|was)\W{1,3})?(\d{3}[ -]?\d{2}[ -]?\d{4})(?!\d)", re.I
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")


def _number_findings(text: str) -> Iterator[Finding]:
    for match in _CODE.finditer(text):
        yield Finding(*match.span(1), "code or PIN")
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield Finding(*match.span(), "card number")
    for match in _SSN.finditer(text):
        if ssn.is_valid(match.group()):
            yield Finding(*match.span(), "US SSN")
    for match in _SSN_SAID.finditer(text):
        if ssn.is_valid(re.sub(r"\D", "", match.group(1))):
            yield Finding(*match.span(1), "US SSN")
    for match in _IBAN.finditer(text):
        # The pattern runs on over capitalised words after the number: try it shorter until it checks out.
        candidate = match.group()
        while len(candidate.replace(" ", "")) >= 15:
            if iban.is_valid(candidate):
                yield Finding(match.start(), match.start() + len(candidate), "IBAN")
                break
            candidate = candidate[:-1].rstrip()


# --- the public functions -----------------------------------------------------------------------------------------


def find_secrets(text: str) -> list[Finding]:
    """Every secret or PII found in ``text``, overlapping findings merged, in order."""
    found = sorted(
        [*_detector_findings(text), *_token_findings(text), *_said_findings(text), *_number_findings(text)],
        key=lambda f: (f.start, -f.end),
    )
    merged: list[Finding] = []
    for finding in found:
        if finding.end <= finding.start:
            continue
        if merged and finding.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = Finding(last.start, max(last.end, finding.end), last.kind)
        else:
            merged.append(finding)
    return merged


def redact_text(text: str) -> str:
    """``text`` with every secret :func:`find_secrets` finds replaced by ``[redacted]``. Idempotent."""
    parts: list[str] = []
    position = 0
    for finding in find_secrets(text):
        parts += [text[position : finding.start], REDACTED]
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


_SECRET_KEY = re.compile(
    r"pass(?:word|wd|phrase|code)|pwd|secret|token|api[_-]?key|authori[sz]ation|credential|private[_-]?key|cookie"
    r"|account[_-]?key|access[_-]?key|^(?:pw|pin|otp|ssn)$",
    re.IGNORECASE,
)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_arguments(value)
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of tool-call arguments fit for the audit log: a key naming a secret (``password``, ``api_key``,
    ``Authorization``…) has its whole value replaced, and every string, however nested, goes through
    :func:`redact_text`."""
    return {
        str(key): REDACTED if _SECRET_KEY.search(str(key)) else _redact_value(value) for key, value in arguments.items()
    }


def redact_data(value: Any) -> Any:
    """Any JSON-like value with every string in it redacted (mapping keys naming a secret lose their value whole)."""
    return _redact_value(value)
