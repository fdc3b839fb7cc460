"""Realistic portal and contact-center traffic with noise, and its exact ground truth."""
