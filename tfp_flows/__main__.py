"""`python -m tfp_flows ...` runs the `tfp-flows` command line (see `tfp_flows.cli`)."""

import sys

from tfp_flows.cli import main

if __name__ == "__main__":
    sys.exit(main())
