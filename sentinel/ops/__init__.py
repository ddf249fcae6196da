"""sentinel/ops"""
