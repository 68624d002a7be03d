"""Typed settings, loaded once from config.toml.

Every key has a default, so a file with only a few keys starts the service. Unknown keys
and wrong types stop start-up with one line naming the key. Secrets may come from the
environment instead of the file (see ENV_SECRETS).
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(Exception):
    """A bad or missing configuration value; the message names the key."""


class Secret(str):
    """A string that keeps its value out of repr() and logs."""

    def __repr__(self) -> str:
        return "Secret('**********')" if self else "Secret('')"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    max_body_bytes: int = 64 * 1024


@dataclass(frozen=True)
class WeChatSettings:
    token: Secret = Secret("")
    app_id: str = ""
    app_secret: Secret = Secret("")
    encoding_aes_key: Secret = Secret("")
    api_base_url: str = "https://api.weixin.qq.com"
    # Seconds a handler may take before the webhook answers "success" and the reply goes
    # out later as a customer-service message (WeChat gives up after 5 s).
    reply_budget_seconds: float = 4.0
    # Message encryption as chosen on the WeChat admin page: "plain", "compat" (either)
    # or "safe" (encrypted only: only msg_signature covers the body). Empty: "compat"
    # when encoding_aes_key is set, else "plain".
    mode: str = ""
    # Signed requests older or newer than this are refused; nonces are remembered as long.
    max_clock_skew_seconds: int = 300

    @property
    def demo(self) -> bool:
        """Demo mode: no AppSecret, so nothing is sent to the WeChat API."""
        return not self.app_secret

    @property
    def message_mode(self) -> str:
        """The encryption mode in force: mode, or its default."""
        return self.mode or ("compat" if self.encoding_aes_key else "plain")


@dataclass(frozen=True)
class StorageSettings:
    database: Path = Path("data/bot.db")
    # Key for ID card numbers at rest (urlsafe base64 Fernet key). Empty: generated on
    # first run into the database's folder with owner-only permissions.
    encryption_key: Secret = Secret("")
    # Days the message log (and with it the record of answered messages) is kept.
    keep_days: int = 180


@dataclass(frozen=True)
class RateLimitSettings:
    # A subscriber sending more than max_messages within window_seconds gets one notice,
    # then silence until the window has passed; 0 turns the limit off.
    max_messages: int = 20
    window_seconds: float = 60.0


@dataclass(frozen=True)
class SimulatorSettings:
    enabled: bool = True
    # With an app_secret (real subscribers) the simulator is off unless this is set, and
    # then only for staff signed in to the console.
    in_production: bool = False


@dataclass(frozen=True)
class MatcherSettings:
    policies_dir: Path = Path("policies")
    # Scores are 0-100. At or above answer_threshold the bot answers; between the two it
    # offers "did you mean"; below suggest_threshold it says it did not understand.
    answer_threshold: float = 70.0
    suggest_threshold: float = 50.0
    max_suggestions: int = 3
    # Matches remembered per process, by exact question text (menu words and the common
    # questions come again and again); 0 turns the cache off. A reload starts afresh.
    cache_size: int = 4096


@dataclass(frozen=True)
class Office:
    """Another office that questions outside this service are referred to."""
    key: str  # the office's id in policies/offices.toml
    name: str
    phone: str = ""
    address: str = ""


@dataclass(frozen=True)
class CountySettings:
    name: str = "示范县"
    bureau: str = "县人力资源和社会保障局"
    address: str = "县政务服务中心二楼 创业服务窗口"
    hours: str = "周一至周五 8:30-12:00，14:30-17:30"
    hotline: str = "0000-12345678"
    townships: tuple[str, ...] = ()
    offices: tuple[Office, ...] = ()

    def office(self, key: str) -> Office | None:
        """The configured office with this key, if any."""
        return next((o for o in self.offices if o.key == key), None)


@dataclass(frozen=True)
class ApiSettings:
    # When set, /api/* requires "Authorization: Bearer <key>".
    key: Secret = Secret("")


@dataclass(frozen=True)
class ConsoleSettings:
    # Signs session cookies. Empty: generated on first run into the database's folder.
    secret_key: Secret = Secret("")
    # Wrong passwords for one user name from one address before each further try from there
    # waits 2, 4, 8 ... seconds, at most lockout_minutes. Other addresses are not slowed.
    max_failed_logins: int = 5
    lockout_minutes: int = 15
    # Address of the reverse proxy in front of the service (e.g. "127.0.0.1"). Only requests
    # from it have X-Forwarded-For and X-Forwarded-Proto believed. Empty: no proxy.
    trusted_proxy: str = ""
    # The console is served over HTTPS: Secure session cookies and Strict-Transport-Security
    # even when no proxy says so.
    https: bool = False


@dataclass(frozen=True)
class DialogueSettings:
    timeout_minutes: int = 30
    resume_hours: int = 24
    max_attempts: int = 3


@dataclass(frozen=True)
class Course:
    id: str
    name: str
    dates: str = ""
    place: str = ""
    capacity: int = 30


@dataclass(frozen=True)
class LoanSettings:
    # The figures the loan form enforces and the policy answers quote ({loan_ceiling} …).
    ceiling_yuan: int = 50000  # one person
    partnership_ceiling_yuan: int = 200000
    term_years: int = 2


@dataclass(frozen=True)
class PushSettings:
    # How to reach subscribers outside the 48-hour customer-service window:
    # "template" (template message) or "mass" (mass send by tag).
    fallback_channel: str = "template"
    template_id: str = ""
    daily_quota: int = 100000
    # Sends per second to the API; WeChat throttles beyond its own limits anyway.
    rate_per_second: float = 50.0


@dataclass(frozen=True)
class VoiceSettings:
    # Voice messages WeChat sends without a transcript: "wechat" (WeChat's speech-to-text
    # API), "command" (a local program, see command), "off" (ask the user to type).
    # Empty: "wechat" with a real account, "off" in demo mode.
    recogniser: str = ""
    # For "command": program and arguments; "{wav}" becomes the path of a 16 kHz mono WAV
    # file. The program prints the text on stdout; a non-zero exit is a failure.
    command: tuple[str, ...] = ()
    # ffmpeg converts WeChat's AMR/Speex (and the simulator's recordings).
    ffmpeg: str = "ffmpeg"
    # Seconds one conversion, command run or wait for WeChat's result may take.
    timeout_seconds: float = 15.0
    # Longer voice is not recognised (WeChat's API takes at most 60 s).
    max_seconds: float = 60.0

    def mode(self, demo: bool) -> str:
        """The recogniser in use: the configured one, else "wechat" (real account) or "off"."""
        return self.recogniser or ("off" if demo else "wechat")


@dataclass(frozen=True)
class MenuButton:
    name: str
    key: str = ""
    url: str = ""
    sub_buttons: tuple[MenuButton, ...] = ()


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    wechat: WeChatSettings = field(default_factory=WeChatSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    matcher: MatcherSettings = field(default_factory=MatcherSettings)
    county: CountySettings = field(default_factory=CountySettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    dialogue: DialogueSettings = field(default_factory=DialogueSettings)
    loan: LoanSettings = field(default_factory=LoanSettings)
    push: PushSettings = field(default_factory=PushSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    courses: tuple[Course, ...] = ()
    menu: tuple[MenuButton, ...] = ()

    @property
    def data_dir(self) -> Path:
        """Folder of the database file; generated keys live beside it."""
        return self.storage.database.parent


# (table, key) -> environment variable that overrides the file.
ENV_SECRETS = {
    ("wechat", "token"): "CYT_WECHAT_TOKEN",
    ("wechat", "app_secret"): "CYT_WECHAT_APP_SECRET",
    ("wechat", "encoding_aes_key"): "CYT_WECHAT_ENCODING_AES_KEY",
    ("storage", "encryption_key"): "CYT_ENCRYPTION_KEY",
    ("api", "key"): "CYT_API_KEY",
    ("console", "secret_key"): "CYT_CONSOLE_SECRET_KEY",
}


def load_settings(path: str | os.PathLike[str], env: typing.Mapping[str, str] | None = None) -> Settings:
    """Read a TOML config file into Settings; relative paths resolve against its folder."""
    path = Path(path)
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"配置文件不存在: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: TOML 格式错误: {exc}") from None
    for (table, key), var in ENV_SECRETS.items():
        if env.get(var):
            raw.setdefault(table, {})
            if isinstance(raw[table], dict):
                raw[table][key] = env[var]
    return settings_from_dict(raw, base_dir=path.resolve().parent)


def settings_from_dict(raw: dict[str, typing.Any], base_dir: Path | None = None) -> Settings:
    """Build Settings from a parsed TOML document (tests call this directly)."""
    settings = _build(Settings, raw, "")
    if base_dir is not None:
        settings = _resolve_paths(settings, base_dir)
    _check(settings)
    return settings


def _build(cls: type, raw: typing.Any, where: str) -> typing.Any:
    if not isinstance(raw, dict):
        raise SettingsError(f"配置项 {where or '根'} 应为表 (table)")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise SettingsError(f"未知配置项: {_join(where, key)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            kwargs[f.name] = _convert(hints[f.name], raw[f.name], _join(where, f.name))
    try:
        return cls(**kwargs)
    except TypeError as exc:
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in kwargs and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        key = _join(where, missing[0]) if missing else where
        raise SettingsError(f"缺少配置项: {key}") from exc


def _convert(hint: typing.Any, value: typing.Any, where: str) -> typing.Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise SettingsError(f"配置项 {where} 应为列表")
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, str):  # forward reference inside MenuButton
        hint = MenuButton
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"配置项 {where} 应为 true 或 false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"配置项 {where} 应为整数")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"配置项 {where} 应为数字")
        return float(value)
    if hint in (str, Secret, Path):
        if not isinstance(value, str):
            raise SettingsError(f"配置项 {where} 应为字符串")
        return hint(value)
    raise SettingsError(f"配置项 {where}: 不支持的类型")  # pragma: no cover


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else base / p
    return dataclasses.replace(
        settings,
        storage=dataclasses.replace(settings.storage, database=absolute(settings.storage.database)),
        matcher=dataclasses.replace(settings.matcher, policies_dir=absolute(settings.matcher.policies_dir)),
    )


def _check(s: Settings) -> None:
    key = s.wechat.encoding_aes_key
    if key and len(key) != 43:
        raise SettingsError("配置项 wechat.encoding_aes_key 应为 43 个字符（或留空）")
    if not s.wechat.api_base_url.startswith(("http://", "https://")):
        raise SettingsError("配置项 wechat.api_base_url 应以 http:// 或 https:// 开头")
    if not 0 <= s.matcher.suggest_threshold <= s.matcher.answer_threshold <= 100:
        raise SettingsError("配置项 matcher.suggest_threshold / answer_threshold"
                            " 应满足 0 ≤ suggest ≤ answer ≤ 100")
    if s.matcher.cache_size < 0:
        raise SettingsError("配置项 matcher.cache_size 不能小于 0")
    if s.push.fallback_channel not in ("template", "mass"):
        raise SettingsError("配置项 push.fallback_channel 应为 \"template\" 或 \"mass\"")
    if s.wechat.mode not in ("", "plain", "compat", "safe"):
        raise SettingsError("配置项 wechat.mode 应为 \"plain\"、\"compat\" 或 \"safe\"")
    if s.wechat.mode in ("compat", "safe") and not key:
        raise SettingsError(f"配置项 wechat.mode = \"{s.wechat.mode}\" 需要设置 wechat.encoding_aes_key")
    if s.wechat.max_clock_skew_seconds <= 0:
        raise SettingsError("配置项 wechat.max_clock_skew_seconds 应大于 0")
    if s.wechat.reply_budget_seconds <= 0:
        raise SettingsError("配置项 wechat.reply_budget_seconds 应大于 0")
    if s.storage.keep_days < 1:
        raise SettingsError("配置项 storage.keep_days 应至少为 1")
    if s.ratelimit.max_messages < 0 or s.ratelimit.window_seconds <= 0:
        raise SettingsError("配置项 ratelimit.max_messages 不能小于 0，window_seconds 应大于 0")
    _check_voice(s)
    ids = [c.id for c in s.courses]
    if len(set(ids)) != len(ids):
        raise SettingsError("配置项 courses: 课程 id 重复")


def _check_voice(s: Settings) -> None:
    v = s.voice
    if v.recogniser not in ("", "wechat", "command", "off"):
        raise SettingsError("配置项 voice.recogniser 应为 \"wechat\"、\"command\" 或 \"off\"")
    if v.recogniser == "wechat" and s.wechat.demo:
        raise SettingsError("配置项 voice.recogniser = \"wechat\" 需要 wechat.app_secret"
                            "（演示模式请用 \"command\" 或 \"off\"）")
    if v.recogniser == "command" and not any("{wav}" in arg for arg in v.command[1:]):
        raise SettingsError("配置项 voice.command 应为 [程序, 参数…]，其中一个参数含 {wav}")
    if v.timeout_seconds <= 0 or v.max_seconds <= 0:
        raise SettingsError("配置项 voice.timeout_seconds / max_seconds 应大于 0")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
