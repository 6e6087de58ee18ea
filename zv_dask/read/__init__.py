"""Readers run inside tasks: the cells, object arrays, objects and links of one level -> numpy and pandas."""
