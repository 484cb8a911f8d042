"""Offline dataset preparation behind the scripts in ``training/``: SMS/URMP metadata and jobs
(``sms_metadata``), cutting clips (``clip_cut``), RLE masks (``rle``), focal prompts
(``focal_prompts``) and training features (``latents``)."""
