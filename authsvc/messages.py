"""The one catalogue of human-readable ``msg`` texts, English and Simplified Chinese.

Clients must branch on ``data.error`` (a stable slug), never on these texts.
"""

from __future__ import annotations

SUPPORTED_LANGUAGES = ("en", "zh")

CATALOGUE: dict[str, dict[str, str]] = {
    "ok": {"en": "ok", "zh": "请求成功"},
    "invalid_request": {"en": "The request is malformed.", "zh": "请求格式错误"},
    "validation_failed": {"en": "Some fields are invalid.", "zh": "参数校验失败"},
    "unsupported_media_type": {
        "en": "The body must be application/json.",
        "zh": "请求体必须是 application/json",
    },
    "payload_too_large": {"en": "The request body is too large.", "zh": "请求体过大"},
    "method_not_allowed": {"en": "Method not allowed.", "zh": "不支持该请求方法"},
    "not_found": {"en": "Not found.", "zh": "资源不存在"},
    "invalid_credentials": {
        "en": "Wrong username or password.",
        "zh": "用户名或密码错误",
    },
    "invalid_client": {
        "en": "Client authentication failed.",
        "zh": "客户端认证失败",
    },
    "unknown_client": {
        "en": "There is no registered client with this client_id.",
        "zh": "客户端未注册",
    },
    "invalid_scope": {
        "en": "The scope is malformed, not allowed to this client, or wider than the session's.",
        "zh": "请求的权限范围无效",
    },
    "transport_not_allowed": {
        "en": "This client may not use this transport.",
        "zh": "该客户端不允许使用此令牌传输方式",
    },
    "insufficient_scope": {
        "en": "The access token lacks the scope this request needs.",
        "zh": "访问令牌的权限范围不足",
    },
    "account_disabled": {"en": "This account is disabled.", "zh": "账号已被禁用"},
    "forbidden": {
        "en": "This token may not use this operation.",
        "zh": "无权执行此操作",
    },
    "username_taken": {"en": "This username is taken.", "zh": "用户名已被占用"},
    "device_code_unknown": {
        "en": "No device is waiting with this code; check it and try again.",
        "zh": "没有等待此代码的设备，请检查后重试",
    },
    "device_code_used": {
        "en": "This code was already allowed or denied.",
        "zh": "此代码已被允许或拒绝",
    },
    "unauthorized_client": {
        "en": "This client may not use this grant.",
        "zh": "该客户端不允许使用此授权方式",
    },
    "authorization_pending": {
        "en": "The user has not decided yet; poll again after the interval.",
        "zh": "用户尚未授权，请稍后再试",
    },
    "slow_down": {
        "en": "Polling too fast: wait 5 seconds more between polls.",
        "zh": "轮询过快，请延长间隔",
    },
    "access_denied": {"en": "The user denied the device.", "zh": "用户拒绝了该设备"},
    "expired_token": {
        "en": "The device code expired; start again.",
        "zh": "设备代码已过期，请重新开始",
    },
    "invalid_grant": {
        "en": "The grant is invalid, used already, or another client's.",
        "zh": "授权无效、已被使用或属于其他客户端",
    },
    "too_many_rows": {
        "en": "Too many rows in one request; split it.",
        "zh": "单次请求的行数过多，请分批提交",
    },
    "too_many_attempts": {
        "en": "Too many failed attempts; try again later.",
        "zh": "失败次数过多，请稍后再试",
    },
    "token_missing": {"en": "A bearer token is required.", "zh": "缺少访问令牌"},
    "token_invalid": {"en": "The token is invalid.", "zh": "令牌无效"},
    "token_expired": {"en": "The token has expired.", "zh": "令牌已过期"},
    "token_revoked": {"en": "The token has been revoked.", "zh": "令牌已被吊销"},
    "wrong_token_type": {
        "en": "This kind of token is not accepted here.",
        "zh": "令牌类型错误",
    },
    "csrf_failed": {
        "en": "The X-CSRF-Token header is missing or does not match.",
        "zh": "CSRF 校验失败",
    },
    "invalid_dpop_proof": {
        "en": "The DPoP proof is missing, invalid, replayed or made with another key.",
        "zh": "DPoP 证明缺失、无效、重放或密钥不符",
    },
    "use_dpop_nonce": {
        "en": "Sign the DPoP proof again with the nonce in the DPoP-Nonce header.",
        "zh": "请使用 DPoP-Nonce 头中的随机数重新签名 DPoP 证明",
    },
    "dpop_required": {
        "en": "This client must prove possession of a key: send a DPoP proof.",
        "zh": "该客户端必须发送 DPoP 证明",
    },
    "refresh_reused": {
        "en": "This refresh token was already used; the session has been ended.",
        "zh": "刷新令牌被重复使用，会话已终止",
    },
    "session_revoked": {"en": "The session has ended.", "zh": "会话已失效"},
    "session_expired": {
        "en": "The session expired after inactivity.",
        "zh": "会话因长时间未使用已过期",
    },
    "service_unavailable": {
        "en": "The service is temporarily unavailable.",
        "zh": "服务暂时不可用",
    },
    "internal_error": {"en": "Internal server error.", "zh": "服务器内部错误"},
}


def message(slug: str, language: str = "en") -> str:
    """The text for ``slug`` in ``language``, falling back to English, then to the slug."""
    texts = CATALOGUE.get(slug)
    if texts is None:
        return slug
    return texts.get(language) or texts["en"]
