"""Training and validation datasets: SMS/URMP features read from disk (``sms_dataset``) and the
synthetic ``debug`` set (``synthetic``)."""
