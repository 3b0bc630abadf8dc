"""Where tools come from: every source lists definitions and executes calls behind one interface."""
