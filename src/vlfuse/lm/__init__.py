"""The LLM bridge: a pretrained language model that reads visual tokens (captioning, free-form VQA)."""
