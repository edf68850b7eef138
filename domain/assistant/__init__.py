"""The assistant context: roles, prompts with versions and labels, prompt tests."""
