"""FER-Bench's commands and their library.

The suite's other packages, `backends` and `datasets`, lie beside this one. `python -m`
puts the current folder first on the import path, where a folder named `datasets` (a data
folder, say) would be imported instead of the suite's, and fail far from the cause. So
the checkout this package comes from goes first.
"""

import sys
from pathlib import Path

_CHECKOUT = str(Path(__file__).resolve().parent.parent)
if sys.path[:1] != [_CHECKOUT]:
    sys.path.insert(0, _CHECKOUT)
