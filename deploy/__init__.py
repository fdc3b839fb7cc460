"""Running cxpulse: settings, CLI, the local Kafka broker, the all-in-one stack."""
