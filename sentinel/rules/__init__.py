"""sentinel/rules"""
