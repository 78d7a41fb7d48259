# Serves a c10d TCPStore the way torchrun's elastic agent does (torch.distributed.TCPStore with
# is_master=True, from Debian's python3-torch) on an OS-chosen loopback port, prints the port,
# and serves until a client sets the key "qsr_test/stop" or the deadline passes. Then it prints
# which of the keys given on the command line exist, one "KEY present|missing" per line.
#
# usage: python3 agent_store.py DEADLINE_SECONDS [KEY...]
import sys
from datetime import timedelta

import torch.distributed as dist

deadline = timedelta(seconds=float(sys.argv[1]))
store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=deadline)
print(store.port, flush=True)
try:
    store.wait(["qsr_test/stop"], deadline)
except RuntimeError as e:
    print(f"agent_store: no stop key within the deadline: {e}", flush=True)
    sys.exit(1)
# This TCPStore binding has no check(): a short bounded wait tells whether a key exists.
for key in sys.argv[2:]:
    try:
        store.wait([key], timedelta(milliseconds=200))
        print(key, "present", flush=True)
    except RuntimeError:
        print(key, "missing", flush=True)
