"""Adapters for Hugging Face transformers, timm and Lightning, imported lazily."""
