"""Model registry context: every LLM and ML model of the platform and its versions."""
