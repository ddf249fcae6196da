"""sentinel/scan"""
