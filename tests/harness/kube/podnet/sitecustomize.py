"""The pod network, for Python processes the kubelet stand-in starts.

In a pod, "every interface" (``0.0.0.0``, ``""``, ``::``) means the pod's own
address. Here every pod shares the machine's network, so a wildcard bind would take
the port on every address (two hubs could not both listen on :8081). This module is
loaded at interpreter start (``PYTHONPATH``) and maps a wildcard address to
``$ENERTEF_STANDIN_POD_IP``, the address kwok gave the pod.
"""

import os
import socket

_POD_IP = os.environ.get("ENERTEF_STANDIN_POD_IP")
_WILDCARDS = (None, "", "0.0.0.0", "::", "::0")

if _POD_IP:
    _getaddrinfo = socket.getaddrinfo
    _bind = socket.socket.bind

    def _pod_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host in _WILDCARDS and (flags & socket.AI_PASSIVE or host):
            return _getaddrinfo(_POD_IP, port, socket.AF_INET, type, proto, flags)
        return _getaddrinfo(host, port, family, type, proto, flags)

    def _pod_bind(self, address):
        if self.family == socket.AF_INET and isinstance(address, tuple) and address[0] in _WILDCARDS:
            address = (_POD_IP, *address[1:])
        return _bind(self, address)

    socket.getaddrinfo = _pod_getaddrinfo
    socket.socket.bind = _pod_bind
