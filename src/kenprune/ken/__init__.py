"""KEN: keep k fine-tuned values per row, chosen through a kernel density estimate; reset the rest."""
