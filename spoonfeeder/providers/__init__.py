"""AI providers behind one interface."""
