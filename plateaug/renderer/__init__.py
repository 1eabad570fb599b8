"""The plate renderer: region specs (TOML) and their loader, text sampling, the glyph atlas,
layout, static layers, the batched renderer and the Sobel outline; shipped regions/ and fonts/."""
