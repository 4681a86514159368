"""The publisher's side: the key folder a publisher signs with, and packing a folder of
content into one signed .mdrop bundle. Runs on the publisher's trusted laptop only."""
