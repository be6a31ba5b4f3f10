"""FuseSoC generator (GAPI 1.0): run ``microscopiq generate accel`` with the core's parameters.

FuseSoC calls ``python3 generate_accel.py INPUT.yml`` in the output folder; the input holds
``parameters`` (options of ``generate accel`` with underscores). The Verilog, manifest and the
core (named after the top module) are written into the current folder.
"""

import os
import sys

import yaml

from microscopiq.cli import main


def command_line(parameters: dict) -> list[str]:
    argv = ["generate", "accel", "--out", os.getcwd()]
    for name, value in parameters.items():
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return argv


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        request = yaml.safe_load(handle)
    sys.exit(main(command_line(request.get("parameters") or {})))
