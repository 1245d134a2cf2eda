"""Was an open or a click made by a person or by a machine? Mail privacy proxies fetch every
image when a message arrives (Apple Mail Privacy Protection, Yahoo), security gateways follow
every link within seconds (Microsoft Safe Links, Proofpoint, Mimecast, Barracuda). Counted as
a person's, they swell scores with interest nobody showed. Judged from the user agent, the
fetcher's network and the seconds since the e-mail went out; each verdict says why."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# Substrings of user agents that are machines, never a person's mail client or browser.
AGENTS = (
    "yahoomailproxy", "barracuda", "mimecast", "proofpoint", "urldefense", "safelinks",
    "microsoft office existence discovery", "python-requests",
    "python-urllib", "curl/", "wget/", "go-http-client", "okhttp", "java/", "libwww", "httpclient",
    "headlesschrome", "phantomjs", "bot", "spider", "crawler", "scanner", "preview", "slurp",
    "facebookexternalhit", "linkexpanding",
)
# Networks of known fetchers (extend with LEADFLOW_MACHINE_NETWORKS): Apple's (Mail Privacy
# Protection fetches from there), Microsoft's mail filtering (Exchange Online Protection and
# Safe Links).
NETWORKS = ("17.0.0.0/8", "40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17")


@dataclass(frozen=True)
class Judge:
    networks: tuple[str, ...] = NETWORKS
    open_seconds: float = 2.0  # an open this soon after sending is a proxy's prefetch
    click_seconds: float = 10.0  # a click this soon is a scanner following every link
    _nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_nets", tuple(ipaddress.ip_network(n, strict=False) for n in self.networks))

    def machine(self, kind: str, user_agent: str, ip: str, seconds: float, method: str = "GET") -> str | None:
        """Why this fetch was a machine's, or None for a person's."""
        agent = user_agent.strip()
        low = agent.lower()
        if not agent:
            return "no user agent"
        if method.upper() == "HEAD":
            return "a HEAD request (a link checker)"
        for token in AGENTS:
            if token in low:
                return f"user agent says {token!r}"
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            address = None
        if address is not None:
            for net in self._nets:
                if address.version == net.version and address in net:
                    return f"from {net}, a known mail proxy or scanner network"
        # Apple's proxy sends a bare browser agent with no platform, which no mail client does
        if kind == "open" and agent == "Mozilla/5.0":
            return "a bare 'Mozilla/5.0' agent (Apple Mail Privacy Protection)"
        limit = self.open_seconds if kind == "open" else self.click_seconds
        if seconds < limit:
            return f"{seconds:.1f} s after sending (under {limit:g} s)"
        return None
