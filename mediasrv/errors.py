"""The whole mediasrv exception tree.

::

    MediaSrvError
    ├── ProtocolError                  (abstract: a wire protocol was broken)
    │   ├── LocalProtocolError         we misused a core (a bug on our side)
    │   └── RemoteProtocolError        the peer sent something invalid
    ├── CodecError                     audio of the wrong shape or rate
    ├── ConfigError                    agent / daemon configuration is invalid (names the field)
    ├── FlowError                      the call-flow engine hit an impossible transition
    └── ProviderError                  a remote service failed (fields: provider, status, retryable)
        ├── ProviderConnectError       could not connect / connection dropped
        ├── ProviderTimeout            no answer in time
        ├── ProviderRejected           the service refused the request (auth, quota, bad request)
        └── ProviderProtocolError      the service answered with something we cannot parse

Cores never raise for a peer's bad input: they record a RemoteProtocolError and go on
(the shell decides what to log). Shells translate library exceptions into ProviderError
subclasses with ``raise ... from exc``.
"""

from __future__ import annotations


class MediaSrvError(Exception):
    """Base of every error mediasrv raises on purpose."""


class ProtocolError(MediaSrvError):
    """A wire protocol was broken (abstract: raise a subclass)."""


class LocalProtocolError(ProtocolError):
    """We drove a protocol core the wrong way (a bug in mediasrv)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that does not follow the protocol."""


class CodecError(MediaSrvError, ValueError):
    """Audio handed to a codec has the wrong length, width or rate."""


class ConfigError(MediaSrvError, ValueError):
    """Configuration is invalid; the message names the offending field."""


class FlowError(MediaSrvError):
    """The call-flow engine reached a state/event pair it has no transition for."""


class ProviderError(MediaSrvError):
    """A remote provider (Soniox, ElevenLabs, LLM, Telnyx) failed.

    Attributes:
        provider: short provider name, e.g. ``"soniox"``.
        status: HTTP status / WebSocket close code / vendor error code, if any.
        retryable: whether trying again (reconnecting) may succeed.
    """

    def __init__(self, message: str, *, provider: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retryable = retryable


class ProviderConnectError(ProviderError):
    """Could not connect to the provider, or the connection dropped."""


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""


class ProviderRejected(ProviderError):
    """The provider refused the request (auth, quota, invalid parameters)."""


class ProviderProtocolError(ProviderError):
    """The provider answered with something we cannot parse."""
