output "kms_key_arn" {
  description = "ARN of the customer-managed KMS key (rotation on) that encrypts the data buckets."
  value       = aws_kms_key.this.arn
}

output "kms_key_id" {
  description = "ID of the customer-managed KMS key."
  value       = aws_kms_key.this.key_id
}

output "bucket_names" {
  description = "Data bucket names by role: data (raw), processed, models (also the pipeline root), capture."
  value       = { for key, bucket in aws_s3_bucket.data : key => bucket.id }
}

output "bucket_arns" {
  description = "Data bucket ARNs by role: data (raw), processed, models, capture."
  value       = { for key, bucket in aws_s3_bucket.data : key => bucket.arn }
}

output "logs_bucket" {
  description = "Name of the bucket that receives the S3 access logs of the data buckets."
  value       = aws_s3_bucket.logs.id
}

output "logs_bucket_arn" {
  description = "ARN of the access-logs bucket."
  value       = aws_s3_bucket.logs.arn
}
