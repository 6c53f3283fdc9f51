"""Style profiles: clustering a user's garments, naming clusters, the collage."""
