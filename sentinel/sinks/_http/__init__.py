"""sentinel/sinks/_http"""
