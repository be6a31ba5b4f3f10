"""microscopiq: MicroScopiQ accelerator generator, quantizers, golden model and verification.

Sub-packages (each a top-level folder of the repository):

* ``microscopiq.hdl``   — Amaranth hardware (folder ``hdl/``);
* ``microscopiq.quant`` — PyTorch quantizers, packed format and the integer golden model (``quant/``);
* ``microscopiq.tb``    — cocotb testbenches and simulator runners (``tb/``).
"""

from .config import AccelConfig, ConfigError, FormatConfig

__all__ = ["AccelConfig", "ConfigError", "FormatConfig"]
__version__ = "0.1.0"
