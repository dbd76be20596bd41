"""The FCMAE study: does in-domain FCMAE pretraining pay off on small data? See README.md."""
