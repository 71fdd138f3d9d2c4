"""Evaluation: IR metrics, the (dataset x method x pool factor) sweep, and its reports."""
