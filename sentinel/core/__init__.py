"""sentinel/core"""
