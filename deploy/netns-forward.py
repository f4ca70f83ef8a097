#!/usr/bin/env python3
"""Forward TCP from 127.0.0.1:PORT in this network namespace to HOST:TPORT inside the
network namespace NETNS (a name of `ip netns`). deploy/lab.sh uses it to show the lab's
Prometheus, which runs inside the lab, on this host's loopback, without routing the
lab's addresses on this host.

Usage: netns-forward.py PORT NETNS HOST TPORT

Each connection gets a thread that enters NETNS (setns(2) changes only the calling
thread), connects there, returns to its own namespace and copies bytes both ways.
"""
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def connect_in(netns, addr):
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        setns(target)
        try:
            return socket.create_connection(addr, timeout=10)
        finally:
            setns(own)
    finally:
        os.close(own)
        os.close(target)


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client, netns, addr):
    try:
        upstream = connect_in(netns, addr)
    except OSError as e:
        print(f"netns-forward: {netns} {addr[0]}:{addr[1]}: {e}", file=sys.stderr)
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    port, netns, host, tport = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(64)
    while True:
        client, _ = listener.accept()
        threading.Thread(
            target=serve, args=(client, netns, (host, int(tport))), daemon=True
        ).start()


if __name__ == "__main__":
    main()
