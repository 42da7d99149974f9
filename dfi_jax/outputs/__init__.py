"""What runs write: the names of their files (`names`) and their figures and pages (`figures`)."""
