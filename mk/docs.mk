# Documentation targets. Included by the main Makefile.
.PHONY: diagram

diagram: ## Render docs/architecture.dot to docs/architecture.svg (needs Graphviz's dot)
	@command -v dot >/dev/null || { echo "diagram: Graphviz's dot is not installed (apt-get install graphviz)" >&2; exit 1; }
	dot -Tsvg docs/architecture.dot -o docs/architecture.svg
