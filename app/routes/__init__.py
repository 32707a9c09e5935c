"""One module per route family; app/main.py mounts them."""
