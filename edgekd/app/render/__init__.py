"""Everything edgekd draws on the terminal (rich), one module per command: ``distill``, ``export``,
``bench``. ``numbers`` holds the number formats every text output shares (the terminal, bench's
markdown, the gate's lines); it is stdlib-only, so the torch-free bench side may use it."""
