output "role_arn" {
  description = "ARN of the role the CI publish job assumes (the AWS_ROLE_ARN repository variable)."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the CI role."
  value       = aws_iam_role.this.name
}

output "github_oidc_provider_arn" {
  description = "ARN of the account's IAM OIDC provider for token.actions.githubusercontent.com (created here or found)."
  value       = one(concat(aws_iam_openid_connect_provider.github[*].arn, data.aws_iam_openid_connect_provider.github[*].arn))
}

output "subjects" {
  description = "The sub claims the role trusts, e.g. repo:my-org/skinlesion:environment:dev."
  value       = local.subjects
}
