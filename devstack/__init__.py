"""The local stack behind `make run`: moto as the embedded AWS, the REST API and the SIP edge."""
