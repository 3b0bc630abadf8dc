"""A test "upstream" that answers every line with something that is not JSON-RPC."""

import sys

for _ in sys.stdin:
    sys.stdout.write("this is not JSON-RPC {{{\n")
    sys.stdout.flush()
