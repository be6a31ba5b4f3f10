"""The tool flow: Verilog generation, manifest, FuseSoC core, lint, Yosys/nextpnr synthesis."""
