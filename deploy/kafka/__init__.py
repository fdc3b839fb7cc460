"""The local Apache Kafka broker: Maven-resolved jars, KRaft storage, start/stop/status."""

from cxpulse.deploy.kafka.broker import BrokerConfig, KafkaBroker, KafkaError, free_port

__all__ = ["BrokerConfig", "KafkaBroker", "KafkaError", "free_port"]
